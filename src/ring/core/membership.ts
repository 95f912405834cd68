import type { Broadcast } from "./broadcast-log.js";
import type { RingCoreConfig } from "./core-config.js";
import { HashRing } from "./hash-ring.js";
import { KRings } from "./k-rings.js";
import { LocalHealth, suspicionBounds, suspicionTimeoutMs, type SuspicionBounds } from "./lifeguard.js";
import { isLive, MemberTable, toUpdate, type Change, type Member } from "./member-table.js";
import type { Message, Update } from "./messages.js";
import { TimerQueue } from "./timer-queue.js";
import type { TokenView } from "./token.js";

/** A message the driver must deliver to the member listening at `to` (host:port). */
export interface Outgoing {
  to: string;
  toId: string | undefined;
  msg: Message;
}

export type RingEvent =
  | { type: "member"; member: Member; previous: Member | undefined }
  | { type: "delivered"; broadcast: Broadcast }
  | { type: "tick"; token: TokenView }
  | { type: "joined" };

export interface RingCoreStats {
  probes: number;
  probeFailures: number;
  suspicionsRaised: number;
  deathsDeclared: number;
  refutations: number;
  syncsSent: number;
  broadcastDuplicates: number;
  /** Overlay links routed around a member that refused a connection (see `unreachable`). */
  linksRepaired: number;
}

interface Suspicion {
  incarnation: number;
  startedAt: number;
  by: Set<string>;
  bounds: SuspicionBounds;
}

/**
 * The membership half of a ring member: the member table, the K rings derived from it, suspicions and
 * their Lifeguard timeouts, refutation, and the batched flood that carries membership news over the
 * overlay. `RingCore` adds the protocol that feeds it (probes, syncs, joins, the token). Pure: no sockets,
 * no clock; `clock` is the time of the input being handled.
 */
export abstract class Membership {
  readonly config: RingCoreConfig;
  protected readonly table = new MemberTable();
  protected readonly rings: KRings;
  protected readonly timers = new TimerQueue();
  protected readonly health: LocalHealth;
  protected readonly suspicions = new Map<string, Suspicion>();
  private readonly listeners: Array<(e: RingEvent) => void> = [];
  private outbox: Outgoing[] = [];
  protected incarnation: number;
  protected seq = 0;
  protected lastChangeAt = -Infinity;
  protected clock: number;
  private readonly floodQueue = new Map<string, { upd: Map<string, Update>; hops: number }>();
  private floodScheduled = false;
  private neighbourCache: { version: number; skipped: number; ids: string[] } | undefined;
  /**
   * Members this one could not reach (a refused or broken connection), whatever their status: the overlay
   * takes the next member along each ring instead, at once, while the detector still probes them and decides
   * on their death. One message from such a member makes it a neighbour again.
   */
  protected readonly unreachable = new Set<string>();
  /** Subjects of a sync conflict asked directly, and when (see `applyUpdate`). */
  private readonly asked = new Map<string, number>();
  private unreachableVersion = 0;
  /** Members held dead (not left): the partition healer probes them. */
  protected readonly dead = new Set<string>();
  protected leaving = false;
  protected placement: HashRing | undefined;
  readonly stats: RingCoreStats = {
    probes: 0,
    probeFailures: 0,
    suspicionsRaised: 0,
    deathsDeclared: 0,
    refutations: 0,
    syncsSent: 0,
    broadcastDuplicates: 0,
    linksRepaired: 0,
  };

  constructor(config: RingCoreConfig, now: number) {
    this.config = config;
    this.clock = now;
    this.rings = new KRings(config.rings);
    this.health = new LocalHealth(config.awarenessMax, config.lifeguard);
    this.incarnation = config.incarnation;
    this.table.apply(this.selfUpdate(), now);
    this.rings.add(config.id);
  }

  /** `{from, fa}` of every message this member sends. */
  protected get me(): { from: string; fa: string } {
    return { from: this.config.id, fa: this.config.addr };
  }

  get id(): string {
    return this.config.id;
  }

  get checksum(): number {
    return this.table.checksum;
  }

  get localHealth(): number {
    return this.health.score;
  }

  onEvent(listener: (e: RingEvent) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Every member known, dead and left ones included (until reaped). */
  members(): Member[] {
    return [...this.table.all()];
  }

  status(id: string): Member | undefined {
    return this.table.get(id);
  }

  /** Ring r in order (live members only). */
  ringOrder(r: number): string[] {
    return this.rings.order(r);
  }

  /**
   * This member's overlay neighbours: on each of the K rings the nearest successor and predecessor it can
   * reach (members in `unreachable` are stepped over). Cached per ring change.
   */
  neighbours(): string[] {
    let c = this.neighbourCache;
    if (c?.version !== this.rings.version || c.skipped !== this.unreachableVersion) {
      const skip = this.unreachable.size > 0 ? (id: string) => this.unreachable.has(id) : undefined;
      c = {
        version: this.rings.version,
        skipped: this.unreachableVersion,
        ids: this.rings.neighbours(this.id, skip),
      };
      this.neighbourCache = c;
    }
    return c.ids;
  }

  /** Marks a member unreachable; false when it already was (or is not on the rings). */
  protected markUnreachable(id: string): boolean {
    if (this.unreachable.has(id) || !this.rings.has(id)) return false;
    this.unreachable.add(id);
    this.unreachableVersion++;
    this.stats.linksRepaired++;
    return true;
  }

  /** A member was heard from (or left the rings): it is no longer stepped over. */
  protected markReachable(id: string): void {
    if (this.unreachable.delete(id)) this.unreachableVersion++;
  }

  owner(key: string): string | undefined {
    return this.placementRing().owner(key);
  }

  owners(key: string, count: number): string[] {
    return this.placementRing().ownersOf(key, count);
  }

  nextDeadline(): number | undefined {
    return this.timers.next();
  }

  /** Messages produced since the last call. */
  drain(): Outgoing[] {
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  /**
   * Applies one update; true when it was news here (so it should travel on). In a full sync, a member that
   * one side holds alive and the other dead at the same incarnation is not decided by the table order:
   * the subject itself is asked (a buddy ping carrying the claim), and it refutes if it lives. This is what
   * re-merges the two halves of a healed partition instead of letting each half kill the other.
   */
  protected applyUpdate(u: Update, now: number, mode: "flood" | "sync" | "direct", from: string): boolean {
    if (u.id === this.id) {
      this.aboutSelf(u, now);
      return false;
    }
    const local = this.table.get(u.id);
    if (mode === "sync" && local && local.incarnation === u.i) {
      if ((isLive(local.status) && u.s === 2) || (local.status === "dead" && u.s <= 1)) {
        // Once per period per subject: after a partition every sync names the same hundreds of subjects.
        const askedAt = this.asked.get(u.id);
        if (askedAt === undefined || now - askedAt >= this.config.periodMs) {
          if (this.asked.size >= 4096) this.asked.clear();
          this.asked.set(u.id, now);
          const claim: Update = u.s === 2 ? u : toUpdate(local);
          this.send(local.addr, local.id, {
            ...this.me,
            t: "ping",
            seq: ++this.seq,
            cs: this.checksum,
            upd: [claim],
          });
        }
        if (local.status === "alive" && u.s === 2) {
          // Held alive here, dead there: suspect it (by the other side's word). A live subject refutes,
          // a dead one is declared dead when the suspicion times out, as for any suspicion.
          const suspect: Update = { ...toUpdate(local), s: 1, by: u.by ?? from };
          if (this.applyUpdate(suspect, now, "direct", from)) this.flood([suspect], undefined, 0);
        }
        return false;
      }
    }
    const change = this.table.apply(u, now);
    if (!change) {
      // Only an update that names its accuser confirms: a sync entry or a relayed copy without one may be
      // nothing but this member's own accusation coming back, and must not halve its timeout.
      if (u.s === 1 && u.by !== undefined && local?.status === "suspect" && local.incarnation === u.i) {
        return this.confirm(u.id, u.by);
      }
      return false;
    }
    this.changed(change, u.by ?? from, now);
    return true;
  }

  /** An update about this member: anything but "alive at my incarnation" is refuted with a higher one. */
  protected aboutSelf(u: Update, now: number): boolean {
    if (this.leaving) return false;
    if (u.i < this.incarnation || (u.s === 0 && u.i <= this.incarnation)) return false;
    this.incarnation = u.i + 1;
    this.stats.refutations++;
    if (u.s === 1) this.health.apply(1);
    const me = this.selfUpdate();
    this.table.apply(me, now);
    this.flood([me], undefined, 0);
    return true;
  }

  protected changed(change: Change, by: string, now: number): void {
    const { member: m, previous: p } = change;
    this.lastChangeAt = now;
    const wasLive = p !== undefined && isLive(p.status);
    if (isLive(m.status) && !wasLive) this.rings.add(m.id);
    if (!isLive(m.status) && wasLive) {
      this.rings.remove(m.id);
      this.markReachable(m.id);
    }
    if (isLive(m.status) !== wasLive) this.placement = undefined;
    if (m.status === "dead") this.dead.add(m.id);
    else this.dead.delete(m.id);
    if (m.status === "suspect") {
      const bounds = suspicionBounds(
        this.rings.size,
        this.config.periodMs,
        this.config.suspicionMult,
        this.config.suspicionMaxMult,
        this.config.lifeguard,
      );
      this.suspicions.set(m.id, { incarnation: m.incarnation, startedAt: now, by: new Set([by]), bounds });
      this.timers.at(now + bounds.maxMs, "suspicion", m.id);
    } else {
      this.suspicions.delete(m.id);
    }
    if (!p || p.status !== m.status || p.incarnation !== m.incarnation) {
      this.emit({ type: "member", member: m, previous: p });
    }
  }

  protected confirm(id: string, by: string): boolean {
    const s = this.suspicions.get(id);
    if (!s || s.by.has(by)) return false;
    s.by.add(by);
    this.timers.at(s.startedAt + suspicionTimeoutMs(s.bounds, s.by.size - 1), "suspicion", id);
    return true;
  }

  protected checkSuspicion(id: string, now: number): void {
    const s = this.suspicions.get(id);
    const m = this.table.get(id);
    if (!s || !m || m.status !== "suspect" || m.incarnation !== s.incarnation) return;
    const due = s.startedAt + suspicionTimeoutMs(s.bounds, s.by.size - 1);
    if (now < due) return;
    this.stats.deathsDeclared++;
    const u: Update = { ...toUpdate(m), s: 2, by: this.id };
    if (this.applyUpdate(u, now, "direct", this.id)) this.flood([u], undefined, 0);
  }

  /**
   * Queues membership news for every overlay neighbour (but the one it came from). Queues are sent as one
   * message per neighbour every `gossipDelayMs`, which bounds the message rate at degree / delay per member
   * however many suspicions and refutations are in flight (slow members can raise dozens per second).
   */
  protected flood(upd: Update[], except: string | undefined, hops: number): void {
    for (const id of this.neighbours()) {
      if (id === except) continue;
      let q = this.floodQueue.get(id);
      if (!q) {
        q = { upd: new Map(), hops: 0 };
        this.floodQueue.set(id, q);
      }
      // One entry per (member, incarnation, status, accuser): repeats within a batch carry nothing new.
      for (const u of upd) q.upd.set(`${u.id}\u0000${u.i}\u0000${u.s}\u0000${u.by ?? ""}`, u);
      q.hops = Math.max(q.hops, hops + 1);
    }
    if (this.floodQueue.size > 0 && !this.floodScheduled) {
      this.floodScheduled = true;
      this.timers.at(this.clock + this.config.gossipDelayMs, "gossip");
    }
  }

  protected flushFlood(): void {
    this.floodScheduled = false;
    for (const [id, q] of this.floodQueue) {
      const m = this.table.get(id);
      if (m) this.send(m.addr, m.id, { ...this.me, t: "gossip", upd: [...q.upd.values()], hops: q.hops });
    }
    this.floodQueue.clear();
  }

  protected sendToNeighbours(msg: Message, except?: string, ids = this.neighbours()): void {
    for (const id of ids) {
      if (id === except) continue;
      const m = this.table.get(id);
      if (m) this.send(m.addr, m.id, msg);
    }
  }

  protected send(to: string, toId: string | undefined, msg: Message): void {
    this.outbox.push({ to, toId, msg });
  }

  protected selfUpdate(): Update {
    const u: Update = { id: this.id, a: this.config.addr, i: this.incarnation, s: 0 };
    if (Object.keys(this.config.meta).length > 0) u.m = { ...this.config.meta };
    return u;
  }

  protected placementRing(): HashRing {
    this.placement ??= new HashRing(this.rings.order(0));
    return this.placement;
  }

  protected emit(e: RingEvent): void {
    for (const l of this.listeners) l(e);
  }
}
