/**
 * Bytes of upload bodies a coordinator holds in memory at once, over all uploads: bodies kept for a retry on
 * the next node (up to `--retain` each) and chunked bodies read before their shard is chosen. Past the bound a
 * chunked body goes to a temp file and a declared one streams through without being kept, so a crowd of
 * uploads, stalled or not, cannot grow the coordinator's memory past it. Pure bookkeeping.
 */
export class MemoryBudget {
  private used = 0;

  constructor(readonly maxBytes: number) {}

  /** Takes `bytes` if they fit; false (nothing taken) when they do not. */
  tryTake(bytes: number): boolean {
    if (this.used + bytes > this.maxBytes) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }

  get usedBytes(): number {
    return this.used;
  }
}
