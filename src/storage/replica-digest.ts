import { fmix32 } from "../common/fmix.js";

/**
 * What replicas compare: every key falls in one of DIGEST_BUCKETS buckets by a hash of its bytes (the same on
 * every node: no seed), and each bucket has a 64-bit digest, the XOR of its entries' hashes. An entry's hash
 * covers its key, version, checksum, size and flags (a tombstone, a damaged record), so two replicas with the
 * same digest for a bucket hold the same state of every key in it, and XOR lets a write update its bucket's
 * digest in O(1) (take the old entry's hash out, put the new one in). Pure functions, no I/O.
 */
export const DIGEST_BUCKETS = 4096;
const BUCKET_SHIFT = 32 - Math.log2(DIGEST_BUCKETS);

export const ENTRY_TOMBSTONE = 1;
export const ENTRY_DAMAGED = 2;

/** Written by `keyHashes` and `entryHash` (two u32 each): no allocation on the write path. */
export const scratch = new Uint32Array(2);

/** Two independent 32-bit hashes of a key's bytes (FNV-1a and a multiply-xorshift), into `scratch`. */
export function keyHashes(key: Uint8Array, from = 0, to = key.length): void {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = from; i < to; i++) {
    const c = key[i]!;
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  scratch[0] = fmix32(a);
  scratch[1] = fmix32(b ^ (to - from));
}

/** The bucket of a key whose hashes `keyHashes` just wrote. */
export function bucketOfScratch(): number {
  return scratch[0]! >>> BUCKET_SHIFT;
}

export function bucketOf(key: Uint8Array): number {
  keyHashes(key);
  return bucketOfScratch();
}

/**
 * The 64-bit hash of an entry into `scratch`: the key's hashes mixed with its version, checksum, size and flags.
 * Call `keyHashes(key)` first.
 */
export function entryHash(stamp: number, origin: number, crc: number, size: number, flags: number): void {
  let a = scratch[0]!;
  let b = scratch[1]!;
  const lo = stamp >>> 0;
  const hi = Math.floor(stamp / 0x1_0000_0000) >>> 0;
  const o = origin | (flags << 16);
  a = Math.imul(a ^ lo, 0x01000193) ^ hi;
  b = Math.imul(b ^ hi, 0xcc9e2d51) ^ lo;
  a = Math.imul(a ^ o, 0x5bd1e995) ^ (crc >>> 0);
  b = Math.imul(b ^ (crc >>> 0), 0x1b873593) ^ o;
  a = Math.imul(a ^ (size >>> 0), 0x85ebca6b) ^ Math.floor(size / 0x1_0000_0000);
  b = Math.imul(b ^ Math.floor(size / 0x1_0000_0000), 0xc2b2ae35) ^ (size >>> 0);
  scratch[0] = fmix32(a);
  scratch[1] = fmix32(b ^ a);
}
