/**
 * Lifeguard's two self-doubt mechanisms (Dadgar et al. 2018, as in memberlist):
 *
 * - Local health (`LocalHealth`): a saturating score raised when this member misses acks it should have
 *   received (its own slowness looks like others' failures) or has to refute a suspicion about itself, and
 *   lowered by every successful probe. Probe period and timeout are stretched by (score + 1), so a starved
 *   member probes less and waits longer instead of accusing healthy peers.
 * - Suspicion timeout (`suspicionTimeoutMs`): starts at `max` and shrinks logarithmically to `min` as
 *   independent members confirm the suspicion, so a lone (possibly slow) accuser cannot kill quickly but
 *   several agreeing observers can.
 */
export class LocalHealth {
  private value = 0;

  constructor(
    private readonly max: number,
    private readonly enabled: boolean,
  ) {}

  get score(): number {
    return this.value;
  }

  /** The factor applied to probe period and timeout. */
  get multiplier(): number {
    return this.value + 1;
  }

  apply(delta: number): void {
    if (!this.enabled) return;
    this.value = Math.min(this.max - 1, Math.max(0, this.value + delta));
  }
}

export interface SuspicionBounds {
  minMs: number;
  maxMs: number;
  /** Confirmations that bring the timeout down to `minMs`. */
  k: number;
}

/** SWIM's suspicion timeout scaled by log10(N) (memberlist), and Lifeguard's upper bound. */
export function suspicionBounds(
  members: number,
  periodMs: number,
  mult: number,
  maxMult: number,
  lifeguard: boolean,
): SuspicionBounds {
  const minMs = mult * Math.max(1, Math.log10(Math.max(1, members))) * periodMs;
  return { minMs, maxMs: lifeguard ? minMs * maxMult : minMs, k: Math.max(1, mult - 2) };
}

export function suspicionTimeoutMs(b: SuspicionBounds, confirmations: number): number {
  if (b.maxMs <= b.minMs) return b.minMs;
  const frac = Math.log(confirmations + 1) / Math.log(b.k + 1);
  return Math.max(b.minMs, b.maxMs - (b.maxMs - b.minMs) * frac);
}
