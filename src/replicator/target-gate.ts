/** The longest pause of a target the ring holds down: its tasks go within this of its return. */
const HELD_MAX_MS = 5000;

/**
 * Per-target admission: at most `limit` tasks at once per target node, and a circuit breaker for targets
 * that fail at the transport level (down, unreachable): after a failure the target is left alone for a delay
 * that doubles with each further failure (capped) and resets on the first success. Pure: the clock is
 * passed in.
 */
export class TargetGate {
  private readonly active = new Map<string, number>();
  private readonly down = new Map<string, { until: number; delayMs: number }>();
  /** Targets the ring holds suspect or dead: paused until it holds them alive again. */
  private readonly held = new Set<string>();

  constructor(
    private readonly limit: number,
    private readonly minDelayMs: number,
    private readonly maxDelayMs: number,
  ) {}

  /** True (and counted) when a task for `target` may start now. */
  tryEnter(target: string): boolean {
    const n = this.active.get(target) ?? 0;
    if (n >= this.limit) return false;
    this.active.set(target, n + 1);
    return true;
  }

  leave(target: string): void {
    const n = (this.active.get(target) ?? 1) - 1;
    if (n <= 0) this.active.delete(target);
    else this.active.set(target, n);
  }

  /** Milliseconds until `target` may be tried again (0 when it is not known to be down). */
  downFor(target: string, now: number): number {
    const d = this.down.get(target);
    if (d && d.until > now) return d.until - now;
    // Held by the ring: a new pause, doubling up to HELD_MAX_MS, so that its tasks come back soon after it does.
    return this.held.has(target) ? this.markDown(target, now, Math.min(HELD_MAX_MS, this.maxDelayMs)) : 0;
  }

  /** Records a transport failure; returns how long the target is now left alone. */
  markDown(target: string, now: number, maxDelayMs = this.maxDelayMs): number {
    const prev = this.down.get(target);
    // Failures of tasks that were already running when the target went down do not extend the pause.
    if (prev && prev.until > now) return prev.until - now;
    const delayMs = prev ? Math.min(maxDelayMs, prev.delayMs * 2) : this.minDelayMs;
    this.down.set(target, { until: now + delayMs, delayMs });
    return delayMs;
  }

  /**
   * The ring's word on a target: held (suspect or dead), it gets no copies and its tasks wait without
   * spending attempts; released (alive), it is tried at once.
   */
  setHeld(target: string, held: boolean, now: number): void {
    if (held) {
      this.held.add(target);
      this.markDown(target, now);
    } else if (this.held.delete(target)) {
      this.down.delete(target);
    }
  }

  /** Records a success; true when the target was paused or had failed before (it is back). */
  markUp(target: string): boolean {
    return this.down.delete(target);
  }

  /** Targets that failed at the transport level and have not succeeded since (paused or not right now), for /stats. */
  downTargets(): string[] {
    return [...this.down.keys()];
  }
}
