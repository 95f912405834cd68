/**
 * The last few samples of a measurement and their median: one slow sample (a GC pause, the busy seconds while a
 * cluster starts) moves a median by one rank, where a running mean would carry it for many samples.
 */
export class RecentSamples {
  private readonly values: number[] = [];
  private next = 0;

  constructor(private readonly size = 16) {}

  add(value: number): void {
    if (this.values.length < this.size) this.values.push(value);
    else this.values[this.next] = value;
    this.next = (this.next + 1) % this.size;
  }

  median(): number | undefined {
    const n = this.values.length;
    if (n === 0) return undefined;
    const sorted = [...this.values].sort((a, b) => a - b);
    const mid = n >> 1;
    return n % 2 === 1 ? sorted[mid] : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  }
}
