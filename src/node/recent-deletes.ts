/** Deletions remembered per node (since it started): enough for the copies still queued when a file is deleted. */
const DEFAULT_CAPACITY = 100_000;

/**
 * When keys were deleted through this node, the most recent `capacity` of them (oldest forgotten first). A
 * conditional write (`If-Unmodified-Since`) treats a delete as a modification, so a replication copy queued
 * before a delete is refused instead of bringing the file back. Memory: one map entry per remembered key.
 */
export class RecentDeletes {
  private readonly at = new Map<string, number>();

  constructor(private readonly capacity = DEFAULT_CAPACITY) {}

  note(key: string, ms: number): void {
    this.at.delete(key);
    this.at.set(key, ms);
    if (this.at.size > this.capacity) {
      const oldest = this.at.keys().next();
      if (!oldest.done) this.at.delete(oldest.value);
    }
  }

  get(key: string): number | undefined {
    return this.at.get(key);
  }
}
