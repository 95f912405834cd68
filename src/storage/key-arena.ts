/**
 * The index's keys as raw UTF-8 bytes in fixed 1 MiB chunks (no per-key object, no string header): a key is
 * addressed by `chunk * CHUNK_BYTES + offset` and never spans two chunks. A key may be followed by its file's
 * stored headers (u16 length ‖ bytes), in the same chunk. Freed keys become garbage that `compact()`
 * reclaims; chunks are only ever appended to, so a snapshot can share every chunk but the last.
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

  /** Copies `key` in (and after it `headers`, length-prefixed, when given) and returns its address. */
  add(key: Uint8Array, headers?: Uint8Array): number {
    const length = key.length + (headers ? 2 + headers.length : 0);
    if (this.fill + length > CHUNK_BYTES) {
      this.chunks.push(new Uint8Array(CHUNK_BYTES));
      this.fill = 0;
    }
    const chunk = this.chunks.length - 1;
    const bytes = this.chunks[chunk]!;
    const at = this.fill;
    bytes.set(key, at);
    if (headers) {
      const h = at + key.length;
      bytes[h] = headers.length & 0xff;
      bytes[h + 1] = headers.length >>> 8;
      bytes.set(headers, h + 2);
    }
    this.fill += length;
    this.live += length;
    return chunk * CHUNK_BYTES + at;
  }

  /** The stored headers after a key of `keyLength` bytes at `address` (one added with headers). */
  headers(address: number, keyLength: number): Uint8Array {
    const chunk = Math.floor(address / CHUNK_BYTES);
    const bytes = this.chunks[chunk]!;
    const h = address - chunk * CHUNK_BYTES + keyLength;
    return bytes.subarray(h + 2, h + 2 + (bytes[h]! | (bytes[h + 1]! << 8)));
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
