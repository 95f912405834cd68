import type { Server } from "node:http";
import { hostname } from "node:os";
import { BackpackError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { ringMemberConfig, type RingMemberConfig } from "./config.js";
import { RingMember, type RingView } from "./ring-member.js";
import { authority, UrlWatch, type Verdict } from "./url-watch.js";

/** The servers a cluster map lists (structurally: the ring does not depend on the cluster map). */
export interface ServerList {
  snapshot(): { servers: Readonly<Record<string, { url: string }>> };
  onChange(listener: (snapshot: { servers: Readonly<Record<string, { url: string }>> }) => void): () => void;
}

/**
 * `GET /ring`: the ring's view, with the role and URL each member announced, and null for a figure not
 * measured yet (the lap time before the token came round twice).
 */
export type ServiceRingView = Omit<RingView, "members" | "lapMs" | "hopTransitMs" | "pingRttMs"> & {
  lapMs: number | null;
  hopTransitMs: number | null;
  pingRttMs: number | null;
  members: Array<RingView["members"][number] & { role: string; url: string }>;
};

/**
 * A service's membership in the ring: a `RingMember` on the service's own HTTP port (connections upgraded to
 * `backpack-ring/1`), announcing its role and URL. Built from the service's ring settings, or off (undefined
 * settings): then `ring` is undefined and `GET /ring` answers 404, and the service works as without a ring.
 */
export class ServiceRing {
  private member: RingMember | undefined;
  private readonly seeds = new Set<string>();

  constructor(
    private readonly config: Readonly<RingMemberConfig> | undefined,
    private readonly role: string,
    private readonly log: Logger,
  ) {}

  /** The running member, or undefined when the ring is off (or not started yet). */
  get ring(): RingMember | undefined {
    return this.member;
  }

  /**
   * Starts the member once the service listens at `url` on `server`. It is reached at `advertise` (the
   * listen address; a wildcard listen address advertises this machine's host name) and joins through the
   * configured seeds and `seeds` (addresses from the cluster map).
   */
  async start(server: Server, url: string, seeds: readonly string[] = []): Promise<void> {
    if (this.config === undefined || this.member !== undefined) return;
    const advertise = this.config.advertise ?? advertiseOf(url);
    for (const s of [...this.config.seeds, ...seeds]) if (s !== advertise) this.seeds.add(s);
    const member = new RingMember(
      ringMemberConfig(this.config, {
        advertise,
        seeds: [...this.seeds],
        meta: { ...this.config.meta, role: this.role, url: `http://${advertise}` },
      }),
      { log: this.log.child({ part: "ring" }), server },
    );
    await member.start();
    this.member = member;
    this.log.info({ id: member.id, role: this.role, seeds: this.seeds.size }, "ring member started");
  }

  /** Joins through these addresses too when any of them is new (the cluster map named more servers). */
  addSeeds(seeds: readonly string[]): void {
    const member = this.member;
    if (!member) return;
    const fresh = seeds.filter((s) => s !== member.addr && !this.seeds.has(s));
    if (fresh.length === 0) return;
    for (const s of fresh) this.seeds.add(s);
    member.join([...this.seeds]);
  }

  /**
   * Joins through the storage nodes `map` lists (they are the seeds of every process that reads the map) and
   * calls `onChange(serverId, verdict, previous)` as the ring's verdict on each of them changes, following
   * the map as servers come and go. Returns the stop function; nothing happens when the ring is off.
   */
  watchServers(
    map: ServerList,
    onChange: (serverId: string, verdict: Verdict | undefined, previous: Verdict | undefined) => void,
  ): () => void {
    const member = this.member;
    if (!member) return () => undefined;
    const watch = new UrlWatch(member, onChange);
    const follow = (servers: Readonly<Record<string, { url: string }>>): void => {
      const urls = Object.fromEntries(Object.entries(servers).map(([id, s]) => [id, s.url]));
      this.addSeeds(Object.values(urls).map(authority));
      watch.setTargets(urls);
    };
    follow(map.snapshot().servers);
    const off = map.onChange((s) => follow(s.servers));
    return () => {
      off();
      watch.stop();
    };
  }

  /** The `GET /ring` answer; NOT_FOUND when the ring is off on this process. */
  view(): ServiceRingView {
    if (!this.member) {
      throw new BackpackError("NOT_FOUND", "the ring is off on this process (started with --no-ring)");
    }
    const v = this.member.view();
    return {
      ...v,
      lapMs: v.lapMs ?? null,
      hopTransitMs: v.hopTransitMs ?? null,
      pingRttMs: v.pingRttMs ?? null,
      members: v.members.map((m) => ({ ...m, role: m.meta.role ?? "", url: m.meta.url ?? "" })),
    };
  }

  /** Announces leaving (others see `left` at once, not a death) and closes the ring's connections. */
  async stop(): Promise<void> {
    await this.member?.stop();
  }
}

/** host:port others reach a service listening at `url` on; a wildcard address becomes the host name. */
export function advertiseOf(url: string): string {
  const u = new URL(url);
  const wildcard = u.hostname === "0.0.0.0" || u.hostname === "[::]";
  const host = wildcard ? hostname() : u.hostname;
  return `${host}:${u.port || (u.protocol === "https:" ? "443" : "80")}`;
}
