import type { TokenTotals } from "./messages.js";
import { RecentSamples } from "./recent-samples.js";

export interface Token extends TokenTotals {
  epoch: number;
  origin: string;
  /** Laps completed: raised when the token crosses the top of ring 0, so every member sees the same tick. */
  tick: number;
}

/** What the token tells this member: the cluster tick and the latency figures measured from its laps. */
export interface TokenView {
  tick: number;
  epoch: number;
  /** Time between this member's last two receipts of the token, ms. */
  lapMs: number | undefined;
  /**
   * Per-hop transit, clock-free, ms: for each lap, the lap minus the holding times divided by the hops; the
   * median of the last 16 laps.
   */
  hopTransitMs: number | undefined;
  /** The last hop's latency from the sender's timestamp (meaningful when clocks agree, e.g. one machine). */
  lastHopMs: number | undefined;
  holding: boolean;
}

/**
 * The seed's "particle", demoted to telemetry and clock: it circulates on ring 0 and carries running totals of
 * hops and holding time (a constant size, whatever the size of the ring), the last sender's timestamp and a
 * lap counter (the cluster tick). From two receipts a member gets its lap time and the per-hop transit.
 * Nothing waits on it. A lost token is regenerated with a higher epoch; when two tokens meet, the higher
 * (epoch, origin) survives and the other is dropped, so duplicates after a partition die out within a lap.
 */
export class TokenKeeper {
  private best: { epoch: number; origin: string } | undefined;
  private held: Token | undefined;
  private heldSince = 0;
  private lastReceiptAt: number | undefined;
  /** The token's totals at the last receipt here. */
  private lastTotals = { hops: 0, held: 0 };
  private readonly transit = new RecentSamples();
  private view: Omit<TokenView, "holding"> = {
    tick: 0,
    epoch: 0,
    lapMs: undefined,
    hopTransitMs: undefined,
    lastHopMs: undefined,
  };
  /** Local time the token was last seen here (received or created). */
  lastSeenAt: number;
  dropped = 0;

  constructor(
    private readonly selfId: string,
    now: number,
  ) {
    this.lastSeenAt = now;
  }

  get state(): TokenView {
    return { ...this.view, holding: this.held !== undefined };
  }

  /** Takes a received token; false when it lost to a better one (dropped) or is a duplicate. */
  accept(token: Token, now: number): boolean {
    if (this.best && compare(token, this.best) < 0) {
      this.dropped++;
      return false;
    }
    if (this.held && compare(token, this.held) === 0) {
      this.dropped++;
      return false;
    }
    this.best = { epoch: token.epoch, origin: token.origin };
    const last = token.last;
    this.view.lastHopMs = last && last.id !== this.selfId ? Math.max(0, now - last.sent) : undefined;
    const hops = token.hops - this.lastTotals.hops;
    if (this.lastReceiptAt !== undefined && token.epoch === this.view.epoch && hops > 0) {
      const lap = now - this.lastReceiptAt;
      this.view.lapMs = lap;
      this.transit.add(Math.max(0, lap - (token.held - this.lastTotals.held)) / hops);
      this.view.hopTransitMs = this.transit.median();
    }
    this.lastTotals = { hops: token.hops, held: token.held };
    this.view.tick = Math.max(this.view.tick, token.tick);
    this.view.epoch = token.epoch;
    this.lastReceiptAt = now;
    this.lastSeenAt = now;
    this.held = { ...token };
    this.heldSince = now;
    return true;
  }

  /** A fresh token (epoch above any seen) held here; the tick continues from the last one seen. */
  create(now: number): Token {
    const token: Token = {
      epoch: (this.best?.epoch ?? 0) + 1,
      origin: this.selfId,
      tick: this.view.tick,
      hops: 0,
      held: 0,
    };
    this.best = { epoch: token.epoch, origin: token.origin };
    this.view.epoch = token.epoch;
    this.lastReceiptAt = undefined;
    this.lastSeenAt = now;
    this.held = token;
    this.heldSince = now;
    return token;
  }

  /** Hands the held token on; `lapEnds` when the next hop wraps past the top of ring 0. */
  release(now: number, lapEnds: boolean): Token | undefined {
    const t = this.held;
    if (!t) return undefined;
    this.held = undefined;
    const tick = lapEnds ? t.tick + 1 : t.tick;
    if (lapEnds) this.view.tick = Math.max(this.view.tick, tick);
    this.lastSeenAt = now;
    return {
      ...t,
      tick,
      hops: t.hops + 1,
      held: t.held + (now - this.heldSince),
      last: { id: this.selfId, sent: now },
    };
  }

  /**
   * Puts back a token whose send failed, so it can go to the next member: the hand-over did not happen (one hop
   * less), the time held so far stays counted and holding goes on from now.
   */
  retake(token: Token, now: number): void {
    if (this.best && compare(token, this.best) < 0) return;
    this.held = { ...token, hops: token.hops - 1 };
    this.heldSince = now;
  }
}

function compare(a: { epoch: number; origin: string }, b: { epoch: number; origin: string }): number {
  if (a.epoch !== b.epoch) return a.epoch - b.epoch;
  return a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0;
}

/**
 * Moves a released token's hand-over time to `now`, when the driver hands it to the network: the time the
 * sender spent between deciding to release it and sending it counts as holding, not as transit.
 */
export function stampHandOver(token: TokenTotals, selfId: string, now: number): void {
  const last = token.last;
  if (!last || last.id !== selfId || now <= last.sent) return;
  token.held += now - last.sent;
  last.sent = now;
}
