/** Larger records are never cached: they are streamed, and one would push out many small ones. */
export const CACHED_RECORD_MAX_BYTES = 1 << 20;

/** A body sharing its memory with at most this much more (a record's head, say) is kept without a copy. */
const SLACK_BYTES = 4096;

/**
 * Verified bodies of records up to CACHED_RECORD_MAX_BYTES, kept in memory so that a hot record is answered
 * without a read from the volume file and without checksumming it again (for a 1 KiB GET those two cost more
 * than the rest of the request; for a 1 MiB GET about as much as sending it). Entries are keyed by where the
 * record lies: a volume file object and an offset. The bytes at a given offset of a volume file never change
 * (volumes are append-only and compaction writes a new file), so an entry can never be stale, only unused: an
 * overwritten or deleted record's entry simply ages out.
 *
 * Eviction is two generations (an O(1) approximation of LRU): entries go into the current generation; when it
 * holds half the budget it becomes the previous one and the old previous one is dropped; a hit in the previous
 * generation moves the entry back into the current one.
 */
export class ReadCache {
  private current = new Map<object, Map<number, Buffer>>();
  private previous = new Map<object, Map<number, Buffer>>();
  private currentBytes = 0;
  private previousBytes = 0;
  hits = 0;
  misses = 0;

  /** @param maxBytes budget for bodies plus a per-entry overhead; 0 turns the cache off. */
  constructor(readonly maxBytes: number) {}

  /** Whether a body of this size would be kept. */
  admits(size: number): boolean {
    return this.maxBytes > 0 && size <= CACHED_RECORD_MAX_BYTES;
  }

  get(file: object, offset: number): Buffer | undefined {
    const hit = this.current.get(file)?.get(offset);
    if (hit !== undefined) {
      this.hits++;
      return hit;
    }
    const previous = this.previous.get(file);
    const old = previous?.get(offset);
    if (previous === undefined || old === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    previous.delete(offset);
    this.previousBytes -= cost(old);
    this.insert(file, offset, old);
    return old;
  }

  /**
   * Keeps a verified body. A body that is most of its memory is kept as it is; a slice of a larger buffer
   * (a pooled one, or a read of many records) is copied, so the cache never pins memory it does not count.
   */
  set(file: object, offset: number, body: Buffer): void {
    if (!this.admits(body.length)) return;
    if (body.buffer.byteLength <= body.length + SLACK_BYTES) {
      this.insert(file, offset, body);
      return;
    }
    const own = Buffer.allocUnsafeSlow(body.length);
    body.copy(own);
    this.insert(file, offset, own);
  }

  /** Bytes held (bodies plus overhead). */
  get bytes(): number {
    return this.currentBytes + this.previousBytes;
  }

  private insert(file: object, offset: number, body: Buffer): void {
    let entries = this.current.get(file);
    if (entries === undefined) this.current.set(file, (entries = new Map<number, Buffer>()));
    const replaced = entries.get(offset);
    if (replaced !== undefined) this.currentBytes -= cost(replaced);
    entries.set(offset, body);
    this.currentBytes += cost(body);
    if (this.currentBytes > this.maxBytes / 2) {
      this.previous = this.current;
      this.previousBytes = this.currentBytes;
      this.current = new Map();
      this.currentBytes = 0;
    }
  }
}

/** What an entry holds on the heap: the memory behind its bytes plus the buffer object and map slot. */
function cost(body: Buffer): number {
  return body.buffer.byteLength + 160;
}
