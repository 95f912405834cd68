/**
 * Retry delay after a failure: `base × 2^(attempts-1)` capped at `max`, with full jitter (a uniformly random
 * delay up to that bound) so that tasks failed together do not come back together. `random` returns [0, 1).
 */
export function backoffMs(attempts: number, baseMs: number, maxMs: number, random: () => number): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(attempts - 1, 30)));
  // Never 0: a task failed against a down target must not come straight back.
  return Math.max(Math.min(baseMs, 10), Math.floor(random() * exp));
}
