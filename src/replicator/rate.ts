/**
 * Events per second over a sliding window of one-second buckets. Pure: the clock is passed in.
 */
export class RateMeter {
  private readonly buckets: number[];
  private readonly seconds: number[];

  constructor(private readonly windowSec = 10) {
    this.buckets = new Array<number>(windowSec).fill(0);
    this.seconds = new Array<number>(windowSec).fill(-1);
  }

  add(n: number, nowMs: number): void {
    const sec = Math.floor(nowMs / 1000);
    const i = sec % this.windowSec;
    if (this.seconds[i] !== sec) {
      this.seconds[i] = sec;
      this.buckets[i] = 0;
    }
    this.buckets[i] = (this.buckets[i] ?? 0) + n;
  }

  /** Average per second over the last full window seconds (the current second included). */
  perSecond(nowMs: number): number {
    const sec = Math.floor(nowMs / 1000);
    let total = 0;
    for (let i = 0; i < this.windowSec; i++) {
      const s = this.seconds[i] ?? -1;
      if (s > sec - this.windowSec && s <= sec) total += this.buckets[i] ?? 0;
    }
    return total / this.windowSec;
  }
}
