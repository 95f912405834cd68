import { isLive, toUpdate, type Member } from "./member-table.js";
import { Membership } from "./membership.js";
import type { RingCoreConfig } from "./core-config.js";
import type { Message, Update } from "./messages.js";
import { RecentSamples } from "./recent-samples.js";

interface Probe {
  seq: number;
  target: string;
  sentAt: number;
  acked: boolean;
  helpers: number;
  nacks: number;
  /** The target is a ring successor (not a sweep pick). */
  neighbour: boolean;
}

/**
 * The failure detector of a ring member (SWIM with Lifeguard), on top of its membership: each period a
 * member probes, in turn, its successor on each of the K rings and then one member of a shuffled sweep of
 * everyone, so every member is watched by K observers plus the sweep. A missed ack leads to ping-req through
 * `indirectChecks` others (helpers that answered recently first), then to a suspicion flooded over the
 * overlay. `RingCore` drives it from its timers and messages and supplies anti-entropy (`compareChecksum`).
 */
export abstract class Detector extends Membership {
  private readonly relays = new Map<number, { origin: string; originAddr: string; seq: number }>();
  private round = 0;
  private sweep: string[] = [];
  private sweepAt = 0;
  private lastPickNeighbour = false;
  private probe: Probe | undefined;
  /** Members whose direct ack we got recently (oldest first): preferred ping-req helpers. */
  private readonly recentAcks = new Map<string, number>();
  private readonly rtt = new RecentSamples();

  constructor(
    config: RingCoreConfig,
    now: number,
    protected readonly random: () => number,
  ) {
    super(config, now);
  }

  /** Direct-ping round trip to ring neighbours, median of the last 16, ms (to compare with the token's hops). */
  get pingRttMs(): number | undefined {
    return this.rtt.median();
  }

  /** Checksums ride on every ping and ack: a difference may call for a full sync. */
  protected abstract compareChecksum(from: string, addr: string, cs: number, now: number): void;

  protected startProbe(now: number): void {
    const m = this.health.multiplier;
    const period = this.config.periodMs * m;
    const target = this.chooseTarget();
    if (!target) {
      this.timers.at(now + period, "probe");
      return;
    }
    const seq = ++this.seq;
    this.probe = {
      seq,
      target: target.id,
      sentAt: now,
      acked: false,
      helpers: 0,
      nacks: 0,
      neighbour: this.lastPickNeighbour,
    };
    this.stats.probes++;
    // Buddy system: a suspect hears about its suspicion from the prober itself and can refute at once.
    const upd = this.config.lifeguard && target.status === "suspect" ? [toUpdate(target)] : undefined;
    this.send(target.addr, target.id, {
      ...this.me,
      t: "ping",
      seq,
      cs: this.checksum,
      ...(upd ? { upd } : {}),
    });
    this.timers.at(now + Math.min(this.config.probeTimeoutMs * m, period * 0.8), "probe-timeout", seq);
    // Scheduled after probe-end so that, due at the same moment, this probe is judged before the next starts.
    this.timers.at(now + period, "probe-end", seq);
    this.timers.at(now + period, "probe");
  }

  private chooseTarget(): Member | undefined {
    const k = this.rings.k;
    const slot = this.round++ % (k + 1);
    this.lastPickNeighbour = slot < k;
    if (slot < k) {
      const id = this.rings.successor(slot, this.id);
      const m = id === undefined ? undefined : this.table.get(id);
      if (m && isLive(m.status) && m.id !== this.id) return m;
    }
    this.lastPickNeighbour = false;
    for (let pass = 0; pass < 2; pass++) {
      if (this.sweepAt >= this.sweep.length) {
        this.sweep = shuffle(this.rings.order(0), this.random);
        this.sweepAt = 0;
      }
      while (this.sweepAt < this.sweep.length) {
        const m = this.table.get(this.sweep[this.sweepAt++] as string);
        if (m && isLive(m.status) && m.id !== this.id) return m;
      }
    }
    return undefined;
  }

  protected probeTimeout(seq: number): void {
    const p = this.probe;
    if (!p || p.seq !== seq || p.acked) return;
    const target = this.table.get(p.target);
    if (!target) return;
    // Helpers that answered us recently first: after a mass failure random helpers are mostly dead, their
    // missing nacks would wrongly lower our own local health and slow the very probing that must repair.
    const helpers = new Set<string>();
    const now = this.clock;
    for (const [id, at] of this.recentAcks) {
      if (helpers.size >= this.config.indirectChecks) break;
      if (now - at < 10 * this.config.periodMs && id !== p.target && this.rings.has(id)) helpers.add(id);
    }
    for (
      let tries = 0;
      helpers.size < this.config.indirectChecks && tries < 4 * this.config.indirectChecks;
      tries++
    ) {
      const id = this.rings.pick(this.random());
      if (id !== undefined && id !== this.id && id !== p.target) helpers.add(id);
    }
    for (const id of helpers) {
      const h = this.table.get(id);
      if (!h) continue;
      this.send(h.addr, h.id, { ...this.me, t: "ping-req", seq, target: target.id, ta: target.addr });
      p.helpers++;
    }
  }

  protected probeEnd(seq: number, now: number): void {
    const p = this.probe;
    if (!p || p.seq !== seq) return;
    this.probe = undefined;
    if (p.acked) {
      this.health.apply(-1);
      return;
    }
    this.stats.probeFailures++;
    // Lifeguard: helpers that did not even nack point at us (we are the slow one), not at the target. One
    // step per probe at most (memberlist adds one per missing nack): after a mass failure the helpers are
    // often dead themselves, and a starved member still saturates within a few periods.
    this.health.apply(p.helpers === 0 || p.nacks < p.helpers ? 1 : 0);
    this.suspect(p.target, now);
  }

  protected suspect(id: string, now: number): void {
    const m = this.table.get(id);
    if (!m || !isLive(m.status)) return;
    const u: Update = { ...toUpdate(m), s: 1, by: this.id };
    if (m.status === "suspect") {
      const s = this.suspicions.get(id);
      // Our own failed probe of a suspect is an independent confirmation; k + 1 accusers are enough to share.
      if (s && s.incarnation === m.incarnation && !s.by.has(this.id) && s.by.size <= s.bounds.k) {
        this.confirm(id, this.id);
        this.flood([u], undefined, 0);
      }
      return;
    }
    this.stats.suspicionsRaised++;
    if (this.applyUpdate(u, now, "direct", this.id)) this.flood([u], undefined, 0);
  }

  protected onPing(msg: Extract<Message, { t: "ping" }>, now: number): void {
    let refuted = false;
    for (const u of msg.upd ?? []) {
      if (u.id === this.id) refuted = this.aboutSelf(u, now) || refuted;
      else if (this.applyUpdate(u, now, "direct", msg.from)) this.flood([u], msg.from, 0);
    }
    const upd = refuted ? [this.selfUpdate()] : undefined;
    this.send(msg.fa, msg.from, {
      ...this.me,
      t: "ack",
      seq: msg.seq,
      cs: this.checksum,
      ...(upd ? { upd } : {}),
    });
    this.compareChecksum(msg.from, msg.fa, msg.cs, now);
  }

  protected onAck(msg: Extract<Message, { t: "ack" }>, now: number): void {
    for (const u of msg.upd ?? [])
      if (this.applyUpdate(u, now, "direct", msg.from)) this.flood([u], msg.from, 0);
    const p = this.probe;
    if (p && p.seq === msg.seq) {
      p.acked = true;
      if (msg.from === p.target) {
        // Most recent last (Map keeps insertion order; re-insert to move), bounded to a few entries.
        this.recentAcks.delete(msg.from);
        this.recentAcks.set(msg.from, now);
        if (this.recentAcks.size > 8) this.recentAcks.delete(this.recentAcks.keys().next().value as string);
        // RTT from neighbours only: their connections persist, a sweep target may pay a TCP handshake.
        if (p.neighbour) this.rtt.add(now - p.sentAt);
      }
    }
    const relay = this.relays.get(msg.seq);
    if (relay) {
      this.relays.delete(msg.seq);
      this.send(relay.originAddr, relay.origin, { ...this.me, t: "ack", seq: relay.seq, cs: this.checksum });
    }
    this.compareChecksum(msg.from, msg.fa, msg.cs, now);
  }

  protected onPingReq(msg: Extract<Message, { t: "ping-req" }>, now: number): void {
    const seq = ++this.seq;
    this.relays.set(seq, { origin: msg.from, originAddr: msg.fa, seq: msg.seq });
    this.send(msg.ta, msg.target, { ...this.me, t: "ping", seq, cs: this.checksum });
    const window = Math.max(this.config.probeTimeoutMs, this.config.periodMs - this.config.probeTimeoutMs);
    this.timers.at(now + 0.8 * window, "relay-nack", seq);
  }

  /** A helper could not reach our probe's target either: the target is silent, not we slow. */
  protected onNack(seq: number): void {
    if (this.probe?.seq === seq) this.probe.nacks++;
  }

  /** A ping-req we relayed got no ack in time: tell the asker (Lifeguard's nack). */
  protected relayNack(seq: number): void {
    const r = this.relays.get(seq);
    if (!r) return;
    this.relays.delete(seq);
    if (this.config.lifeguard) this.send(r.originAddr, r.origin, { ...this.me, t: "nack", seq: r.seq });
  }
}

export function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}
