import { spawn, type ChildProcess } from "node:child_process";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import type { Logger } from "../common/logger.js";
import type { Member } from "../ring/core/member-table.js";
import type { RingMember } from "../ring/ring-member.js";

const BIN = fileURLToPath(new URL("./bin/backpack.js", import.meta.url));
/** First wait before a restart, doubled after each restart that did not bring the member back, up to the max. */
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;
/** A restarted member not alive in the ring after this long is restarted again (with the next backoff). */
const COME_BACK_MS = 15_000;
/** Every dead member is looked at again this often, also without a change in the ring. */
const SWEEP_MS = 2_000;

/**
 * The metadata a member announces so that a neighbour may restart it ("it can respawn it, and reconstruct the
 * ring"): its host and its command line (`backpack` arguments), and its pid (for whoever stops them all).
 */
export function respawnMeta(argv: readonly string[]): Record<string, string> {
  return { host: hostname(), pid: String(process.pid), respawn: JSON.stringify(argv) };
}

/**
 * Restarts members of the ring that died, when this member is the dead one's predecessor on ring 0 (the live
 * member just before it, so exactly one member of agreeing views acts, also for two adjacent deaths) and the
 * dead one runs on this host and announced how to start it (`respawnMeta`). Restarts back off (0.5 s doubling
 * to 30 s) while a member does not come back, and start again from 0.5 s once it is alive. The ring closes
 * over the dead member meanwhile and takes it back when it rejoins. Restarted processes are this member's
 * children: `stop()` stops them (SIGTERM).
 */
export class Respawner {
  private readonly pending = new Map<string, { attempts: number; timer: NodeJS.Timeout | undefined }>();
  private readonly children = new Set<ChildProcess>();
  private off: (() => void) | undefined;
  private sweep: NodeJS.Timeout | undefined;
  private readonly host = hostname();

  constructor(
    private readonly ring: RingMember,
    private readonly log: Logger,
    /** Where a restarted member's output goes (ring-demo passes its lines on). */
    private readonly onOutput: (child: ChildProcess) => void = () => undefined,
  ) {}

  start(): void {
    this.off = this.ring.onChange((e) => {
      if (e.type !== "member" || e.member.id === this.ring.id) return;
      if (e.member.status === "alive") this.forget(e.member.id);
      // Any change may make this member the predecessor of a dead one (its own predecessor died after it,
      // when two adjacent members die at once): every dead member is looked at again.
      this.considerAll();
    });
    // And now and then without a change: a member restarted itself learns of a dead successor with the
    // rest of the ring, not as a change.
    this.sweep = setInterval(() => this.considerAll(), SWEEP_MS);
    this.sweep.unref();
  }

  private considerAll(): void {
    for (const m of this.ring.members()) if (m.status === "dead") this.consider(m);
  }

  /** Stops restarting and stops the members this one restarted. */
  stop(): void {
    this.off?.();
    clearInterval(this.sweep);
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
    for (const c of this.children) c.kill("SIGTERM");
  }

  private consider(m: Member): void {
    const argv = parseArgv(m.meta.respawn);
    if (!argv || m.meta.host !== this.host || this.pending.get(m.id)?.timer) return;
    if (this.ring.predecessorOf(m.id) !== this.ring.id) return;
    const p = this.pending.get(m.id) ?? { attempts: 0, timer: undefined };
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** p.attempts);
    p.timer = setTimeout(() => this.restart(m.id, argv), delay);
    this.pending.set(m.id, p);
  }

  private restart(id: string, argv: string[]): void {
    const p = this.pending.get(id);
    if (!p) return;
    p.timer = undefined;
    const now = this.ring.status(id);
    // Back by itself meanwhile, or no longer ours to restart (the view changed): nothing to do.
    if (now?.status !== "dead" || this.ring.predecessorOf(id) !== this.ring.id) return;
    p.attempts++;
    this.log.warn({ member: id, attempt: p.attempts }, "restarting a dead ring member");
    const child = spawn(process.execPath, [BIN, ...argv], { stdio: ["ignore", "pipe", "pipe"] });
    this.children.add(child);
    child.once("exit", () => this.children.delete(child));
    this.onOutput(child);
    p.timer = setTimeout(() => {
      p.timer = undefined;
      const m = this.ring.status(id);
      if (m?.status === "dead") this.consider(m);
    }, COME_BACK_MS);
  }

  private forget(id: string): void {
    const p = this.pending.get(id);
    if (p) clearTimeout(p.timer);
    this.pending.delete(id);
  }
}

/** A member's announced command line, or undefined when it announced none (or nothing usable). */
function parseArgv(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "string") ? v : undefined;
  } catch {
    return undefined;
  }
}
