import type { Member } from "./core/member-table.js";
import type { RingMember } from "./ring-member.js";

/** What the ring holds about a process: alive, suspect (not answering, not yet declared), or down (dead or left). */
export type Verdict = "alive" | "suspect" | "down";

/**
 * Follows the ring's verdicts on processes known by URL, such as the cluster map's storage nodes: a member
 * stands for a URL when the URL's host:port is the member's address or the one of the URL it announced
 * (`meta.url`). Calls `onChange(name, verdict, previous)` whenever a target's verdict changes; a target no
 * member stands for has none (undefined): the ring says nothing about it, and callers act as without a ring.
 */
export class UrlWatch {
  private targets = new Map<string, string>();
  private readonly verdicts = new Map<string, Verdict>();
  private readonly off: () => void;

  constructor(
    private readonly ring: RingMember,
    private readonly onChange: (
      name: string,
      verdict: Verdict | undefined,
      previous: Verdict | undefined,
    ) => void,
  ) {
    this.off = ring.onChange((e) => {
      if (e.type === "member") this.refresh();
    });
  }

  /** The processes to follow, name → URL (the whole set; replaces the previous one). */
  setTargets(targets: Readonly<Record<string, string>>): void {
    this.targets = new Map(Object.entries(targets).map(([name, url]) => [name, authority(url)]));
    for (const name of [...this.verdicts.keys()]) {
      if (!this.targets.has(name)) this.verdicts.delete(name);
    }
    this.refresh();
  }

  verdict(name: string): Verdict | undefined {
    return this.verdicts.get(name);
  }

  /** Targets the ring holds suspect or down. */
  notAlive(): string[] {
    return [...this.verdicts].filter(([, v]) => v !== "alive").map(([name]) => name);
  }

  stop(): void {
    this.off();
  }

  private refresh(): void {
    const byAddr = new Map<string, Member>();
    for (const m of this.ring.members()) {
      for (const a of [m.addr.toLowerCase(), m.meta.url ? authority(m.meta.url) : ""]) {
        const known = byAddr.get(a);
        // A restarted process may show under an old id too: the most recent word about the address counts.
        if (a && (!known || known.changedAt < m.changedAt)) byAddr.set(a, m);
      }
    }
    for (const [name, addr] of this.targets) {
      const m = byAddr.get(addr);
      const next = m === undefined ? undefined : verdictOf(m);
      const previous = this.verdicts.get(name);
      if (next === previous) continue;
      if (next === undefined) this.verdicts.delete(name);
      else this.verdicts.set(name, next);
      this.onChange(name, next, previous);
    }
  }
}

function verdictOf(m: Member): Verdict {
  return m.status === "alive" ? "alive" : m.status === "suspect" ? "suspect" : "down";
}

/** host:port of a URL, lower case, with the scheme's default port when it names none. */
export function authority(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol === "https:" ? "443" : "80")}`.toLowerCase();
  } catch {
    return url.toLowerCase();
  }
}
