import type { Server } from "node:http";
import { hostname } from "node:os";
import { BackpackError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { ringMemberConfig, type RingMemberConfig } from "./config.js";
import { HashRing } from "./core/hash-ring.js";
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
  private placement: { key: string; ring: HashRing } | undefined;
  private startedAt = 0;
  private joinedAt: number | undefined;
  /** Highest version seen of each kind of delta, and who wants them. */
  private readonly deltas = new Map<string, { version: number; handlers: ((value: unknown) => void)[] }>();
  private readonly messages = new Map<string, ((value: unknown, origin: string) => void)[]>();

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
    this.startedAt = Date.now();
    member.onChange((e) => {
      if (e.type === "joined") this.joinedAt ??= Date.now();
      else if (e.type === "delivered") this.receive(e.broadcast.data, e.broadcast.origin);
    });
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

  /**
   * The member of `role` that owns `key` on the ring's hash placement (256 points per member) among the live
   * members of that role (alive or suspect: a suspect keeps its work until it is declared dead). Members whose
   * views agree name the same owner; when the owner dies its keys go to the next members along the ring, and
   * come back when it returns. Undefined when the ring is off or no such member is live.
   */
  /**
   * True once this member's view can be trusted to name owners: two periods after a seed answered its join
   * (the others' news has had time to arrive), or 10 s after the start when none answered (it is alone).
   */
  get settled(): boolean {
    const now = Date.now();
    if (this.joinedAt !== undefined) return now - this.joinedAt >= 2 * (this.config?.periodMs ?? 0);
    return now - this.startedAt >= SETTLE_ALONE_MS;
  }

  ownerAmong(key: string, role: string): string | undefined {
    const member = this.member;
    if (!member) return undefined;
    const ids = member
      .members()
      .filter((m) => m.meta.role === role && (m.status === "alive" || m.status === "suspect"))
      .map((m) => m.id)
      .sort();
    const cacheKey = ids.join(" ");
    if (this.placement?.key !== cacheKey) this.placement = { key: cacheKey, ring: new HashRing(ids) };
    return this.placement.ring.owner(key);
  }

  /**
   * Floods a versioned delta (`kind`, e.g. "settings") to every member, unless a version as high was seen
   * already. Members hand each kind's new versions to `onDelta`, each version once, and ignore older ones:
   * several publishers of the same change (every process that reads the map) cost one delivery each.
   */
  publish(kind: string, version: number, value: unknown): void {
    if (!this.member || !this.newer(kind, version)) return;
    this.member.broadcast({ delta: kind, version, value });
  }

  /** Calls `handler` with each newer version of `kind` that arrives over the ring. */
  onDelta(kind: string, handler: (value: unknown) => void): void {
    this.kindOf(kind).handlers.push(handler);
  }

  /**
   * Floods `value` to every member as a message of `kind` (not versioned: each one is delivered once, for
   * figures that every member adds up, such as client request counts).
   */
  send(kind: string, value: unknown): void {
    this.member?.broadcast({ kind, value });
  }

  /** Calls `handler(value, origin)` with each message of `kind` another member sends. */
  onMessage(kind: string, handler: (value: unknown, origin: string) => void): void {
    this.messages.set(kind, [...(this.messages.get(kind) ?? []), handler]);
  }

  private receive(data: unknown, origin: string): void {
    const m = data as { kind?: unknown; value?: unknown } | null;
    if (typeof m?.kind === "string") {
      for (const h of this.messages.get(m.kind) ?? []) h(m.value, origin);
      return;
    }
    const d = data as { delta?: unknown; version?: unknown; value?: unknown } | null;
    if (typeof d?.delta !== "string" || !Number.isSafeInteger(d.version)) return;
    if (!this.newer(d.delta, d.version as number)) return;
    for (const h of this.kindOf(d.delta).handlers) h(d.value);
  }

  /** Records `version` of `kind` when it is above the highest seen; true then. */
  private newer(kind: string, version: number): boolean {
    const k = this.kindOf(kind);
    if (version <= k.version) return false;
    k.version = version;
    return true;
  }

  private kindOf(kind: string): { version: number; handlers: ((value: unknown) => void)[] } {
    let k = this.deltas.get(kind);
    if (!k) this.deltas.set(kind, (k = { version: 0, handlers: [] }));
    return k;
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

/** A member no seed answered decides alone after this long. */
const SETTLE_ALONE_MS = 10_000;

/** host:port others reach a service listening at `url` on; a wildcard address becomes the host name. */
export function advertiseOf(url: string): string {
  const u = new URL(url);
  const wildcard = u.hostname === "0.0.0.0" || u.hostname === "[::]";
  const host = wildcard ? hostname() : u.hostname;
  return `${host}:${u.port || (u.protocol === "https:" ? "443" : "80")}`;
}
