/**
 * The index's keys as raw UTF-8 bytes in fixed 1 MiB chunks (no per-key object, no string header): a key is
 * addressed by `chunk * CHUNK_BYTES + offset` and never spans two chunks. Freed keys become garbage that
 * `compact()` reclaims; chunks are only ever appended to, so a snapshot can share every chunk but the last.
 */
export const CHUNK_BYTES = 1 << 20;

export class KeyArena {
  chunks: Uint8Array[] = [];
  /** Bytes used in the last chunk. */
  fill = CHUNK_BYTES;
  /** Bytes of freed keys still in the chunks. */
  garbage = 0;
  /** Bytes of live keys. */
  live = 0;

  /** Copies `key` in and returns its address. */
  add(key: Uint8Array): number {
    if (this.fill + key.length > CHUNK_BYTES) {
      this.chunks.push(new Uint8Array(CHUNK_BYTES));
      this.fill = 0;
    }
    const chunk = this.chunks.length - 1;
    const at = this.fill;
    this.chunks[chunk]!.set(key, at);
    this.fill += key.length;
    this.live += key.length;
    return chunk * CHUNK_BYTES + at;
  }

  free(length: number): void {
    this.live -= length;
    this.garbage += length;
  }

  /** The bytes of a key (a view, valid until the next `compact()`). */
  view(address: number, length: number): Uint8Array {
    const chunk = Math.floor(address / CHUNK_BYTES);
    const at = address - chunk * CHUNK_BYTES;
    return this.chunks[chunk]!.subarray(at, at + length);
  }

  equals(address: number, key: Uint8Array): boolean {
    const chunk = Math.floor(address / CHUNK_BYTES);
    const bytes = this.chunks[chunk]!;
    let at = address - chunk * CHUNK_BYTES;
    for (let i = 0; i < key.length; i++, at++) if (bytes[at] !== key[i]) return false;
    return true;
  }

  /** True when reclaiming the freed bytes is worth a copy of the live ones. */
  wantsCompaction(): boolean {
    return this.garbage > 4 * CHUNK_BYTES && this.garbage > this.live;
  }

  heapBytes(): number {
    return this.chunks.length * CHUNK_BYTES;
  }
}
