import { BroadcastLog, type Broadcast } from "./broadcast-log.js";
import { coreConfig, type RingCoreOptions } from "./core-config.js";
import { KRings, ringPosition } from "./k-rings.js";
import { isLive, toUpdate } from "./member-table.js";
import { Detector, shuffle } from "./detector.js";
import type { Outgoing } from "./membership.js";
import type { Message, Update } from "./messages.js";
import type { Timer } from "./timer-queue.js";
import { TokenKeeper, type Token, type TokenView } from "./token.js";

export type { Outgoing, RingEvent, RingCoreStats } from "./membership.js";

/** Full table exchanges a member starts or answers per probe period, at most (joins are always answered). */
const SYNCS_PER_PERIOD = 4;

/**
 * One member of the ring, as a pure state machine: messages in (`receive`), time in (`advance`), messages
 * out (`drain`), events out (`onEvent`). No sockets, no timers, no clock, no Math.random: the TCP transport
 * and the simulator both drive this same code.
 *
 * Layers: `Membership` (member table, K rings, suspicions, flood), `Detector` (SWIM probing with Lifeguard),
 * and here the API, joins, anti-entropy, broadcast, partition healing and the token. The suspect refutes by
 * raising its incarnation, others confirm, and a suspicion turns into a death when its Lifeguard timeout
 * (shortened by confirmations) runs out.
 */
export class RingCore extends Detector {
  private readonly token: TokenKeeper;
  private readonly log: BroadcastLog;
  private readonly syncedAt = new Map<string, number>();
  private lastSyncAt = -Infinity;
  private broadcastSeq: number;
  private mismatchSince: number | undefined;
  private reapedAt = 0;
  private joined = false;
  private seeds: readonly string[];

  constructor(options: RingCoreOptions, now: number, random: () => number) {
    super(coreConfig(options), now, random);
    this.token = new TokenKeeper(this.config.id, now);
    this.log = new BroadcastLog(this.config.broadcastLog);
    this.broadcastSeq = Math.floor(random() * 2 ** 40);
    this.seeds = this.config.seeds;
    const T = this.config.periodMs;
    this.timers.at(now + random() * T, "probe");
    this.timers.at(now + random() * this.config.healIntervalMs, "heal");
    if (this.config.token) this.timers.at(now + this.config.tokenTimeoutMinMs * random(), "token-watchdog");
    if (this.seeds.some((s) => s !== this.config.addr)) this.join(this.seeds, now);
  }

  get isJoined(): boolean {
    return this.joined;
  }

  tokenView(): TokenView {
    return this.token.state;
  }

  // ---- API ---------------------------------------------------------------------------------------------

  join(seeds: readonly string[], now: number): void {
    this.clock = now;
    this.seeds = seeds;
    this.joined = false;
    this.sendJoins();
    this.timers.at(now + this.config.joinRetryMs, "join");
  }

  /** Announces a graceful departure (status left); the member stops probing and holding the token. */
  leave(now: number): void {
    if (this.leaving) return;
    this.clock = now;
    if (this.token.state.holding) this.releaseToken(now);
    this.flushFlood();
    const neighbours = this.neighbours();
    this.leaving = true;
    this.incarnation++;
    const u = { ...this.selfUpdate(), s: 3 as const };
    this.table.apply(u, now);
    this.rings.remove(this.id);
    this.sendToNeighbours({ ...this.me, t: "gossip", upd: [u], hops: 1 }, undefined, neighbours);
  }

  /** Changes this member's metadata (raises its incarnation so the change wins everywhere). */
  setMeta(meta: Readonly<Record<string, string>>, now: number): void {
    this.clock = now;
    this.config.meta = { ...meta };
    this.incarnation++;
    const u = this.selfUpdate();
    this.table.apply(u, now);
    this.flood([u], undefined, 0);
  }

  /** Floods `data` to every member over the K-ring overlay; each receiver emits a `delivered` event. */
  broadcast(data: unknown, now: number): { origin: string; seq: number } {
    this.clock = now;
    const b: Broadcast = { origin: this.id, seq: ++this.broadcastSeq, data, hops: 0 };
    this.log.add(b, now);
    this.sendToNeighbours({ ...this.me, t: "bcast", origin: b.origin, seq: b.seq, hops: 1, data });
    return { origin: b.origin, seq: b.seq };
  }

  /**
   * Loads a table as if this member had joined long ago (no messages): for the simulator, which starts
   * 1000 members at once, and for tests.
   */
  bootstrap(members: readonly Update[], now: number, rings?: KRings): void {
    this.clock = now;
    const live: string[] = [];
    for (const u of members) {
      if (u.id === this.id || !this.table.apply(u, now)) continue;
      if (u.s <= 1) live.push(u.id);
      else if (u.s === 2) this.dead.add(u.id);
    }
    // The simulator builds the rings of its identical starting views once and hands a copy to each member.
    if (rings) this.rings.copyFrom(rings);
    else this.rings.addAll(live);
    this.placement = undefined;
    this.joined = true;
  }

  // ---- inputs ------------------------------------------------------------------------------------------

  advance(now: number): void {
    this.clock = now;
    const late = this.config.lifeguard ? lateAfterMs(this.config.probeTimeoutMs) : Infinity;
    let deferred: Timer[] | undefined;
    for (let t = this.timers.popDue(now); t; t = this.timers.popDue(now)) {
      // A verdict timer that fires late means this process was starved: the ack or refutation it would
      // wait for may be sitting unread. Judge a moment later, once the driver has read what is waiting (in
      // Node's event loop, timers run before pending I/O is read). Lifeguard's self-doubt, for timers; once
      // per timer, so that a member whose loop always lags still judges.
      if (
        !t.deferred &&
        now - t.at > late &&
        (t.kind === "probe-timeout" || t.kind === "probe-end" || t.kind === "suspicion")
      ) {
        (deferred ??= []).push(t);
        continue;
      }
      this.fire(t, now);
    }
    for (const t of deferred ?? []) this.timers.at(now + 1, t.kind, t.key, true);
  }

  receive(msg: Message, now: number): void {
    this.clock = now;
    if (this.leaving) return;
    if (this.unreachable.size > 0) this.markReachable(msg.from);
    switch (msg.t) {
      case "ping":
        return this.onPing(msg, now);
      case "ack":
        return this.onAck(msg, now);
      case "ping-req":
        return this.onPingReq(msg, now);
      case "nack":
        return this.onNack(msg.seq);
      case "join":
        return this.onJoin(msg, now);
      case "sync":
        return this.onSync(msg, now);
      case "gossip": {
        const news = msg.upd.filter((u) => this.applyUpdate(u, now, "flood", msg.from));
        if (news.length > 0) this.flood(news, msg.from, msg.hops);
        return;
      }
      case "bcast":
        return this.onBroadcast(msg, now);
      case "token":
        return this.onToken(msg, now);
    }
  }

  /**
   * The driver could not deliver `out` (the connection was refused or broke). A token goes on to the next
   * member at once. The overlay is repaired at once too: the member is stepped over, and each replacement
   * neighbour gets what the lost link was carrying (a flood) or a ping; if that one is down as well, its
   * failure repairs one step further. So survivors of a mass failure are linked again within a few round
   * trips, long before the detector has declared every dead member dead.
   */
  sendFailed(out: Outgoing, now: number): void {
    this.clock = now;
    if (this.leaving || out.toId === undefined) return;
    const m = out.msg;
    if (m.t === "token") {
      this.token.retake(tokenOf(m), now);
      this.releaseToken(now, out.toId);
    }
    const before = this.neighbours();
    if (!this.markUnreachable(out.toId)) return;
    const carried = m.t === "gossip" || m.t === "bcast" ? m : undefined;
    for (const id of this.neighbours()) {
      const n = this.table.get(id);
      if (!n || before.includes(id)) continue;
      this.send(n.addr, n.id, carried ?? { ...this.me, t: "ping", seq: ++this.seq, cs: this.checksum });
    }
  }

  // ---- timers ------------------------------------------------------------------------------------------

  private fire(t: Timer, now: number): void {
    if (this.leaving) return;
    switch (t.kind) {
      case "probe":
        return this.startProbe(now);
      case "probe-timeout":
        return this.probeTimeout(t.key as number);
      case "probe-end":
        return this.probeEnd(t.key as number, now);
      case "relay-nack":
        return this.relayNack(t.key as number);
      case "suspicion":
        return this.checkSuspicion(t.key as string, now);
      case "token-release":
        if (this.token.state.holding) this.releaseToken(now);
        return;
      case "token-watchdog":
        return this.tokenWatchdog(now);
      case "heal":
        return this.heal(now);
      case "gossip":
        return this.flushFlood();
      case "join":
        if (this.joined) return;
        this.sendJoins();
        this.timers.at(now + this.config.joinRetryMs, "join");
        return;
    }
  }

  private heal(now: number): void {
    this.timers.at(now + this.config.healIntervalMs, "heal");
    if (now - this.reapedAt > Math.min(60_000, this.config.reapAfterMs)) this.reap(now);
    // Ringpop's healer rate: about healFanout attempts per interval across the whole cluster.
    if (this.random() >= this.config.healFanout / Math.max(1, this.rings.size)) return;
    const candidates: Array<{ addr: string; id: string | undefined }> = [];
    for (const id of this.dead) {
      const m = this.table.get(id);
      if (m) candidates.push({ addr: m.addr, id });
    }
    if (this.seeds.length > 0) {
      const liveAddrs = new Set<string>();
      for (const id of this.rings.order(0)) liveAddrs.add(this.table.get(id)?.addr ?? "");
      for (const s of this.seeds)
        if (s !== this.config.addr && !liveAddrs.has(s)) candidates.push({ addr: s, id: undefined });
    }
    const c = candidates[Math.floor(this.random() * candidates.length)];
    if (c) this.send(c.addr, c.id, { ...this.me, t: "ping", seq: ++this.seq, cs: this.checksum });
  }

  /** Forgets tombstones older than reapAfterMs; prunes broadcast ids. */
  private reap(now: number): void {
    this.reapedAt = now;
    this.log.prune(now);
    for (const m of this.table.all()) {
      if (!isLive(m.status) && now - m.changedAt > this.config.reapAfterMs) {
        this.table.remove(m.id);
        this.dead.delete(m.id);
      }
    }
  }

  // ---- messages ----------------------------------------------------------------------------------------

  private onJoin(msg: Extract<Message, { t: "join" }>, now: number): void {
    if (msg.me.id !== msg.from) return;
    if (this.applyUpdate(msg.me, now, "direct", msg.from)) this.flood([msg.me], msg.from, 0);
    this.sendSync(msg.fa, msg.from, true);
  }

  private onSync(msg: Extract<Message, { t: "sync" }>, now: number): void {
    const news: Update[] = [];
    for (const u of msg.members) if (this.applyUpdate(u, now, "sync", msg.from)) news.push(u);
    if (news.length > 0) this.flood(news, undefined, 0);
    // The answer of a sync is a sync, within the same budget (the asker asks again if it still differs).
    if (!msg.reply && now - this.lastSyncAt >= this.config.periodMs / SYNCS_PER_PERIOD) {
      this.lastSyncAt = now;
      this.sendSync(msg.fa, msg.from, true);
    }
    for (const b of this.log.missingFrom(msg.bids)) {
      this.send(msg.fa, msg.from, {
        ...this.me,
        t: "bcast",
        origin: b.origin,
        seq: b.seq,
        hops: b.hops + 1,
        data: b.data,
      });
    }
    if (!this.joined) {
      this.joined = true;
      this.emit({ type: "joined" });
    }
  }

  private onBroadcast(msg: Extract<Message, { t: "bcast" }>, now: number): void {
    const b: Broadcast = { origin: msg.origin, seq: msg.seq, data: msg.data, hops: msg.hops };
    if (!this.log.add(b, now)) {
      this.stats.broadcastDuplicates++;
      return;
    }
    this.emit({ type: "delivered", broadcast: b });
    this.sendToNeighbours({ ...msg, ...this.me, hops: msg.hops + 1 }, msg.from);
  }

  private onToken(msg: Extract<Message, { t: "token" }>, now: number): void {
    if (!this.config.token) return;
    const token = tokenOf(msg);
    if (!this.token.accept(token, now)) return;
    this.emit({ type: "tick", token: this.token.state });
    this.timers.at(now + this.config.tokenHoldMs, "token-release");
  }

  // ---- anti-entropy ------------------------------------------------------------------------------------

  /**
   * Checksums ride on every ping and ack. A difference that outlives the flood (our table has been quiet
   * for two periods) means a missed update: exchange full tables both ways. A peer we hold dead or do not
   * know at all is the other side of a partition: sync at once.
   */
  protected compareChecksum(from: string, addr: string, cs: number, now: number): void {
    if (cs === this.checksum) {
      this.mismatchSince = undefined;
      return;
    }
    this.mismatchSince ??= now;
    const known = this.table.get(from);
    const urgent = !known || !isLive(known.status);
    // A table that keeps changing is still receiving the flood; but a difference that lasts ten periods is
    // not a flood in flight any more (a member cut off from the overlay after a mass failure).
    const settled = now - this.lastChangeAt >= 2 * this.config.periodMs;
    const stuck = now - this.mismatchSince >= 10 * this.config.periodMs;
    if (!urgent && !settled && !stuck) return;
    const last = this.syncedAt.get(addr);
    if (last !== undefined && now - last < this.config.syncIntervalMs) return;
    // A few full syncs per period at most, whoever asks: after a partition heals, every member of the other
    // half is "urgent", and a sync per peer (each a whole table) would be quadratic in traffic and memory.
    if (now - this.lastSyncAt < this.config.periodMs / SYNCS_PER_PERIOD) return;
    this.lastSyncAt = now;
    this.syncedAt.set(addr, now);
    if (this.syncedAt.size > 4096) this.syncedAt.clear();
    this.sendSync(addr, from, false);
  }

  private sendSync(addr: string, id: string | undefined, reply: boolean): void {
    this.stats.syncsSent++;
    const members = [...this.table.all()].map((m) => toUpdate(m));
    this.send(addr, id, { ...this.me, t: "sync", reply, members, bids: this.log.ids() });
  }

  private sendJoins(): void {
    const seeds = shuffle(
      this.seeds.filter((s) => s !== this.config.addr),
      this.random,
    ).slice(0, 3);
    for (const s of seeds) this.send(s, undefined, { ...this.me, t: "join", me: this.selfUpdate() });
  }

  // ---- token -------------------------------------------------------------------------------------------

  private releaseToken(now: number, skip?: string): void {
    let next = this.rings.successor(0, this.id);
    // Members this one cannot reach are stepped over as the overlay does: passing to one fails at once and
    // releases again, and with two of them the token went back and forth between them without end.
    const passes = (id: string): boolean =>
      id !== skip && !this.unreachable.has(id) && this.table.get(id)?.status === "alive";
    for (let step = 2; next !== undefined && !passes(next); step++) {
      if (step > this.rings.size) {
        next = undefined;
        break;
      }
      next = this.rings.successor(0, this.id, step);
    }
    if (next === undefined || next === this.id) {
      // Alone: the token laps on this member, so the tick still advances.
      const t = this.token.release(now, true);
      if (t && this.token.accept(t, now)) {
        this.emit({ type: "tick", token: this.token.state });
        this.timers.at(now + this.config.tokenHoldMs, "token-release");
      }
      return;
    }
    const wraps =
      ringPosition(next, 0) < ringPosition(this.id, 0) ||
      (ringPosition(next, 0) === ringPosition(this.id, 0) && next < this.id);
    const t = this.token.release(now, wraps);
    const m = this.table.get(next);
    if (t && m) this.send(m.addr, m.id, { ...this.me, t: "token", ...t });
  }

  private tokenWatchdog(now: number): void {
    const lap = this.token.state.lapMs ?? this.rings.size * (this.config.tokenHoldMs + 5);
    const timeout = Math.max(this.config.tokenTimeoutMinMs, 3 * lap + 2 * this.config.periodMs);
    this.timers.at(now + timeout / 4, "token-watchdog");
    if (this.token.state.holding) return;
    const quiet = now - this.token.lastSeenAt;
    // The top of ring 0 regenerates a lost token; anyone does after twice as long (views may disagree).
    if (quiet > 2 * timeout || (quiet > timeout && this.rings.first(0) === this.id)) {
      this.token.create(now);
      this.timers.at(now + this.config.tokenHoldMs, "token-release");
    }
  }
}

/** How late a verdict timer may fire before it is taken as a sign that this process was starved. */
function lateAfterMs(probeTimeoutMs: number): number {
  return Math.max(10, probeTimeoutMs / 4);
}

/** The token a token message carries. */
function tokenOf(m: Extract<Message, { t: "token" }>): Token {
  const token: Token = { epoch: m.epoch, origin: m.origin, tick: m.tick, hops: m.hops, held: m.held };
  return m.last ? { ...token, last: m.last } : token;
}
