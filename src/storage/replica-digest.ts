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
export function keyHashes(key: Uint8Array): void {
  let a = 0x811c9dc5;
  let b = 0x9747b28c;
  for (let i = 0; i < key.length; i++) {
    const c = key[i]!;
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  scratch[0] = fmix(a);
  scratch[1] = fmix(b ^ key.length);
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
  ha = scratch[0]!;
  hb = scratch[1]!;
  feed(stamp >>> 0);
  feed(Math.floor(stamp / 0x1_0000_0000) >>> 0);
  feed(origin | (flags << 16));
  feed(crc >>> 0);
  feed(size >>> 0);
  feed(Math.floor(size / 0x1_0000_0000));
  scratch[0] = ha;
  scratch[1] = hb;
}

let ha = 0;
let hb = 0;

function feed(v: number): void {
  ha = fmix(Math.imul(ha ^ v, 0x01000193) + 0x6b43a9b5);
  hb = fmix(Math.imul(hb + v, 0xcc9e2d51) ^ 0x1b873593);
}

/** Murmur3's finaliser: every input bit affects every output bit. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
