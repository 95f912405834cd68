/**
 * Shard usage as this coordinator sees it, between flushes into the cluster map.
 *
 * - `reserve()` when an upload is routed to a shard: the bytes count against its free space at once, so
 *   concurrent uploads cannot overflow a shard that is nearly full.
 * - `commit()` once the bytes are stored: the reservation becomes a pending delta, flushed later in one batch
 *   (`takeBatch()` → `clusterMap.addUsage` → `settle()`), counted exactly once.
 * - `release()` when the upload failed or was aborted: nothing is counted.
 *
 * Pure bookkeeping: no timers, no I/O (the service drives flushes). Every amount is a finite whole number of
 * bytes; anything else is refused, so usage can never become null, NaN or negative through this path.
 */
export class UsageTracker {
  /** Bytes of uploads in flight, per shard. */
  private readonly reserved = new Map<string, number>();
  /** Bytes stored (or removed, negative) but not yet flushed, per shard. */
  private readonly pending = new Map<string, number>();
  /** Bytes handed to a flush that has not settled yet; still counted, so free space never jumps up. */
  private readonly flushing = new Map<string, number>();

  /** Reserves `size` bytes on `shardId` and returns the function that gives them back (idempotent). */
  reserve(shardId: string, size: number): Reservation {
    const bytes = wholeBytes(size);
    add(this.reserved, shardId, bytes);
    let open = true;
    return {
      shardId,
      size: bytes,
      commit: () => {
        if (!open) return;
        open = false;
        add(this.reserved, shardId, -bytes);
        add(this.pending, shardId, bytes);
      },
      release: () => {
        if (!open) return;
        open = false;
        add(this.reserved, shardId, -bytes);
      },
    };
  }

  /** Records bytes removed (deletes). */
  remove(shardId: string, size: number): void {
    add(this.pending, shardId, -wholeBytes(size));
  }

  /** Bytes counted against `shardId` beyond what the cluster map says: unflushed deltas and reservations. */
  outstanding(shardId: string): number {
    return (
      (this.reserved.get(shardId) ?? 0) + (this.pending.get(shardId) ?? 0) + (this.flushing.get(shardId) ?? 0)
    );
  }

  /**
   * Stored bytes not yet handed to a flush, for reporting usage (`/stats`, `/cluster`). Bytes of a running flush
   * are left out: the map may already show them (its watch can fire before the flush settles), and counting
   * them on both sides would report them twice. Free space uses `outstanding()`, which keeps them.
   */
  unflushed(shardId: string): number {
    return this.pending.get(shardId) ?? 0;
  }

  /**
   * Moves every pending delta into a batch for one `addUsage` call; undefined when there is nothing to send or a
   * flush is still running. Call `settle(batch, ok)` with its outcome.
   */
  takeBatch(): Record<string, number> | undefined {
    if (this.flushing.size > 0) return undefined;
    const batch: Record<string, number> = {};
    for (const [shard, bytes] of this.pending) if (bytes !== 0) batch[shard] = bytes;
    this.pending.clear();
    if (Object.keys(batch).length === 0) return undefined;
    for (const [shard, bytes] of Object.entries(batch)) this.flushing.set(shard, bytes);
    return batch;
  }

  /**
   * Ends a flush. When it failed, the batch goes back into pending (merged with what came in meanwhile) and is
   * sent again next time: a delta is never dropped and never sent twice by this coordinator.
   */
  settle(batch: Readonly<Record<string, number>>, ok: boolean): void {
    for (const [shard, bytes] of Object.entries(batch)) {
      this.flushing.delete(shard);
      if (!ok) add(this.pending, shard, bytes);
    }
  }

  /** True while some delta has not reached the cluster map. */
  get dirty(): boolean {
    for (const v of this.pending.values()) if (v !== 0) return true;
    return this.flushing.size > 0;
  }
}

export interface Reservation {
  readonly shardId: string;
  readonly size: number;
  /** The upload is stored: count it (once). */
  commit(): void;
  /** The upload failed: count nothing. */
  release(): void;
}

function wholeBytes(size: number): number {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(`a byte count must be a whole number ≥ 0, got ${String(size)}`);
  }
  return size;
}

function add(map: Map<string, number>, key: string, delta: number): void {
  const next = (map.get(key) ?? 0) + delta;
  if (next === 0) map.delete(key);
  else map.set(key, next);
}
