import { ContentTypes, OVERFLOW_TYPE } from "./content-types.js";
import { fmix32 } from "../common/fmix.js";
import type { Version } from "../common/version.js";
import { CHUNK_BYTES, KeyArena } from "./key-arena.js";
import { SortedKeys } from "./sorted-keys.js";
import {
  bucketOfScratch,
  DIGEST_BUCKETS,
  ENTRY_DAMAGED,
  ENTRY_TOMBSTONE,
  entryHash,
  keyHashes,
  scratch,
} from "./replica-digest.js";

/**
 * The in-memory index: key → where the object's record lives and what the node answers about it without I/O.
 * Built for about 50 bytes of heap per object beyond the key's own bytes: an open-addressing hash table
 * (linear probing, backward-shift deletion, so no tombstone slots) of 32-bit entry numbers, entries as
 * columns of typed arrays in pages of 4,096 (growth never copies them), keys as UTF-8 in a byte arena,
 * content types interned. No objects per entry, nothing for the garbage collector to trace.
 *
 * Per entry: key address f64, packed key length + type id + tombstone flag u32, volume u32, record offset f64,
 * size f64, body CRC u32, version stamp f64, version origin u16, digest bucket list links 2 × i32 = 54 bytes,
 * plus 4 bytes per hash slot at a load factor of 0.375-0.75.
 *
 * A deleted key keeps an entry (a tombstone: size 0, pointing at its tombstone record) until its grace period
 * is over, so that the node refuses any write or copy older than the delete.
 *
 * A file's stored headers (few files have any but those the S3 front writes, which all carry an ETag) follow its
 * key in the arena, so they cost their own bytes and two more; bit 28 of `meta` says they are there.
 *
 * For listing keys in order, every entry is also in the key order (sorted-keys.ts: about 4-8 bytes per entry),
 * built by the first listing and kept from then on.
 *
 * For comparing replicas (see replica-digest.ts) every entry is also on a doubly linked list of its digest
 * bucket (two more i32 columns, 8 bytes) and in its bucket's 64-bit digest, both kept current by every change.
 * They are not in checkpoints: recovery rebuilds them once the index is complete (`rebuildBuckets`).
 */
export interface EntryValue {
  volume: number;
  offset: number;
  size: number;
  bodyCrc: number;
  version: Version;
  contentType: string | undefined;
  /** The stored headers, encoded (common/stored-headers.ts); undefined for none. */
  headers?: Uint8Array | undefined;
  tombstone: boolean;
}

const PAGE_BITS = 12;
const PAGE = 1 << PAGE_BITS;
const PAGE_MASK = PAGE - 1;
const MAX_LOAD = 0.75;
const KEY_LEN_MASK = 0x7ff;
const TYPE_SHIFT = 11;
/**
 * Bits 11-26 of `meta` are the content type id (16 bits); bit 28 says stored headers follow the key in the
 * arena, bit 29 marks a damaged record, bit 30 a tombstone.
 */
const TYPE_MASK = 0xffff;
const HEADERS_BIT = 1 << 28;
const TOMBSTONE_BIT = 1 << 30;
const DAMAGED_BIT = 1 << 29;
/** Bytes of one entry across its columns (see the class comment). */
export const ENTRY_BYTES = 54;

export interface Page {
  keyAt: Float64Array;
  meta: Uint32Array;
  volume: Uint32Array;
  offset: Float64Array;
  size: Float64Array;
  crc: Uint32Array;
  stamp: Float64Array;
  origin: Uint16Array;
  /** The next and previous entry of the same digest bucket (-1: none). Not checkpointed. */
  bnext: Int32Array;
  bprev: Int32Array;
}

export function newPage(): Page {
  return {
    keyAt: new Float64Array(PAGE),
    meta: new Uint32Array(PAGE),
    volume: new Uint32Array(PAGE),
    offset: new Float64Array(PAGE),
    size: new Float64Array(PAGE),
    crc: new Uint32Array(PAGE),
    stamp: new Float64Array(PAGE),
    origin: new Uint16Array(PAGE),
    bnext: new Int32Array(PAGE),
    bprev: new Int32Array(PAGE),
  };
}

/** The column order of a page, for checkpoints. */
export const PAGE_COLUMNS = ["keyAt", "meta", "volume", "offset", "size", "crc", "stamp", "origin"] as const;
export const PAGE_ENTRIES = PAGE;

export class IndexTable {
  /** Entries in the table: objects and tombstones. */
  count = 0;
  /** Tombstone entries among them. */
  tombstones = 0;
  types = new ContentTypes();
  arena = new KeyArena();
  pages: Page[] = [];
  /** Entries ever allocated (free ones are chained through `keyAt`). */
  highWater = 0;
  freeHead = -1;
  slots: Int32Array;
  private mask: number;
  /** First entry of each digest bucket's list, -1 when empty. */
  readonly bucketHead = new Int32Array(DIGEST_BUCKETS).fill(-1);
  /** Entries per digest bucket. */
  readonly bucketSize = new Uint32Array(DIGEST_BUCKETS);
  /** Per bucket, two u32: the XOR of its entries' 64-bit hashes. */
  readonly digest = new Uint32Array(DIGEST_BUCKETS * 2);
  /**
   * Entry numbers in key order, built by the first `sorted()` (a node never asked for its keys in order pays
   * nothing for it), then following changes with the bucket lists (`tracking`).
   */
  private keyOrder: SortedKeys | undefined;
  /** The key order being built, and the entries inserted and removed since its build began. */
  private keyOrderBuild: Promise<SortedKeys> | undefined;
  private keyOrderChanges: { inserted: Set<number>; removed: Set<number> } | undefined;
  /**
   * Whether the bucket lists, digests and key order follow changes. Off while recovery builds the index (a checkpoint's
   * entries have no lists); `rebuildBuckets` turns it on.
   */
  tracking = true;

  /** `seed` randomises the hash so that clients cannot aim keys at one probe chain. */
  constructor(
    readonly seed: number,
    slotCount = 1024,
  ) {
    this.slots = new Int32Array(slotCount);
    this.mask = slotCount - 1;
  }

  /** Replaces the hash slots wholesale (a checkpoint being loaded). */
  adoptSlots(slots: Int32Array): void {
    this.slots = slots;
    this.mask = slots.length - 1;
  }

  /** The entry number of a key (its UTF-8 bytes), or -1. */
  find(key: Uint8Array): number {
    const slots = this.slots;
    let s = this.hash(key) & this.mask;
    for (;;) {
      const e = slots[s]!;
      if (e === 0) return -1;
      if (this.matches(e - 1, key)) return e - 1;
      s = (s + 1) & this.mask;
    }
  }

  /** Adds a key that is not in the table; returns its entry number. */
  insert(key: Uint8Array, v: EntryValue): number {
    if ((this.count + 1) / this.slots.length > MAX_LOAD) this.resize(this.slots.length * 2);
    const i = this.allocEntry();
    const p = this.pages[i >>> PAGE_BITS]!;
    const j = i & PAGE_MASK;
    p.keyAt[j] = this.arena.add(key, v.headers);
    p.meta[j] = key.length | (v.headers ? HEADERS_BIT : 0);
    this.write(i, v);
    this.placeSlot(this.hash(key), i);
    this.count++;
    if (this.tracking) {
      this.linkAndHash(i);
      this.keyOrder?.insert(i, this.keyOf(i));
      this.keyOrderChanges?.inserted.add(i);
    }
    return i;
  }

  /** Rewrites an entry's values (an overwrite by a newer record). */
  update(i: number, v: EntryValue): void {
    this.rewriteHeaders(i, v.headers);
    if (!this.tracking) {
      this.write(i, v);
      return;
    }
    // The key (so its hashes and bucket) stays: hash it once, take the old entry out, put the new one in.
    this.hashKey(i);
    const k0 = scratch[0]!;
    const k1 = scratch[1]!;
    const b = bucketOfScratch();
    this.toggleHashed(i, b);
    this.write(i, v);
    scratch[0] = k0;
    scratch[1] = k1;
    this.toggleHashed(i, b);
  }

  /** How a version compares with an entry's (negative: older than the entry), without building an object. */
  compareWithEntry(i: number, v: Version): number {
    const p = this.pages[i >>> PAGE_BITS]!;
    const j = i & PAGE_MASK;
    const stamp = p.stamp[j]!;
    return v.stamp !== stamp ? v.stamp - stamp : v.origin - p.origin[j]!;
  }

  /** Marks an entry's record as damaged (found by a read or the scrub): replicas then differ in its bucket. */
  markDamaged(i: number): void {
    if (this.isDamaged(i)) return;
    if (this.tracking) this.toggleHash(i);
    this.pages[i >>> PAGE_BITS]!.meta[i & PAGE_MASK]! |= DAMAGED_BIT;
    if (this.tracking) this.toggleHash(i);
  }

  isDamaged(i: number): boolean {
    return (this.pages[i >>> PAGE_BITS]!.meta[i & PAGE_MASK]! & DAMAGED_BIT) !== 0;
  }

  /** Entry numbers of a digest bucket (unordered). */
  bucketEntries(bucket: number): number[] {
    const out: number[] = [];
    for (let i = this.bucketHead[bucket]!; i >= 0; i = this.pages[i >>> PAGE_BITS]!.bnext[i & PAGE_MASK]!) {
      out.push(i);
    }
    return out;
  }

  /**
   * Builds the bucket lists, digests and key order from the entries (after recovery) and keeps them current
   * from then on.
   */
  rebuildBuckets(): void {
    this.bucketHead.fill(-1);
    this.bucketSize.fill(0);
    this.digest.fill(0);
    this.forEach((i) => this.linkAndHash(i));
    this.keyOrder = undefined;
    this.tracking = true;
  }

  /**
   * The entries in key order, built at the first call (`pause` is awaited between the build's slices, so that
   * a node with millions of keys keeps serving while it sorts them); changes made while it builds are applied
   * at its end.
   */
  async sorted(pause: () => Promise<void>): Promise<SortedKeys> {
    if (this.keyOrder) return this.keyOrder;
    this.keyOrderBuild ??= this.buildKeyOrder(pause).finally(() => (this.keyOrderBuild = undefined));
    return this.keyOrderBuild;
  }

  private async buildKeyOrder(pause: () => Promise<void>): Promise<SortedKeys> {
    const order = new SortedKeys({
      compare: (i, key) => this.compareKey(i, key),
      compareEntries: (a, b) => this.compareEntries(a, b),
    });
    const entries: number[] = [];
    this.forEach((i) => void entries.push(i));
    const changes = { inserted: new Set<number>(), removed: new Set<number>() };
    this.keyOrderChanges = changes;
    try {
      await order.rebuild(entries, changes.removed, pause);
    } finally {
      this.keyOrderChanges = undefined;
    }
    // The build left out what was removed meanwhile; what was inserted meanwhile goes in now.
    for (const i of changes.inserted) order.insert(i, this.keyOf(i));
    this.keyOrder = order;
    return order;
  }

  /** The key order when it is built. */
  get builtKeyOrder(): SortedKeys | undefined {
    return this.keyOrder;
  }

  /** Heap bytes of the key order: 0 until it is first asked for. */
  keyOrderBytes(): number {
    return this.keyOrder?.heapBytes() ?? 0;
  }

  /** Points an entry at its record's new place (compaction moved it). */
  move(i: number, volume: number, offset: number): void {
    const p = this.pages[i >>> PAGE_BITS]!;
    p.volume[i & PAGE_MASK] = volume;
    p.offset[i & PAGE_MASK] = offset;
  }

  /** Removes a key; returns false when it was absent. */
  remove(key: Uint8Array): boolean {
    const slots = this.slots;
    let s = this.hash(key) & this.mask;
    for (;;) {
      const e = slots[s]!;
      if (e === 0) return false;
      if (this.matches(e - 1, key)) break;
      s = (s + 1) & this.mask;
    }
    const i = slots[s]! - 1;
    if (this.isTombstone(i)) this.tombstones--;
    if (this.tracking) {
      this.toggleHash(i);
      this.unlink(i);
      this.keyOrder?.remove(i, key);
      if (this.keyOrderChanges && !this.keyOrderChanges.inserted.delete(i))
        this.keyOrderChanges.removed.add(i);
    }
    // Backward-shift deletion: pull later members of the probe run into the hole so lookups never stop early.
    let hole = s;
    let next = (s + 1) & this.mask;
    while (slots[next] !== 0) {
      const home = this.hash(this.keyOf(slots[next]! - 1)) & this.mask;
      const inRange = hole <= next ? home > hole && home <= next : home > hole || home <= next;
      if (!inRange) {
        slots[hole] = slots[next]!;
        hole = next;
      }
      next = (next + 1) & this.mask;
    }
    slots[hole] = 0;
    this.freeEntry(i);
    this.count--;
    if (this.arena.wantsCompaction()) this.compactArena();
    return true;
  }

  volumeOf(i: number): number {
    return this.pages[i >>> PAGE_BITS]!.volume[i & PAGE_MASK]!;
  }
  offsetOf(i: number): number {
    return this.pages[i >>> PAGE_BITS]!.offset[i & PAGE_MASK]!;
  }
  sizeOf(i: number): number {
    return this.pages[i >>> PAGE_BITS]!.size[i & PAGE_MASK]!;
  }
  crcOf(i: number): number {
    return this.pages[i >>> PAGE_BITS]!.crc[i & PAGE_MASK]!;
  }
  stampOf(i: number): number {
    return this.pages[i >>> PAGE_BITS]!.stamp[i & PAGE_MASK]!;
  }
  versionOf(i: number): Version {
    const p = this.pages[i >>> PAGE_BITS]!;
    return { stamp: p.stamp[i & PAGE_MASK]!, origin: p.origin[i & PAGE_MASK]! };
  }
  isTombstone(i: number): boolean {
    return (this.pages[i >>> PAGE_BITS]!.meta[i & PAGE_MASK]! & TOMBSTONE_BIT) !== 0;
  }
  keyBytesOf(i: number): number {
    return this.pages[i >>> PAGE_BITS]!.meta[i & PAGE_MASK]! & KEY_LEN_MASK;
  }
  typeIdOf(i: number): number {
    return (this.pages[i >>> PAGE_BITS]!.meta[i & PAGE_MASK]! >>> TYPE_SHIFT) & TYPE_MASK;
  }
  contentTypeOf(i: number): string | undefined {
    return this.types.name(this.typeIdOf(i), i);
  }
  /** Bytes of the record's meta: its content type and its stored headers (see record.ts). */
  metaBytesOf(i: number): number {
    return this.types.byteLength(this.typeIdOf(i), i) + (this.headersOf(i)?.length ?? 0);
  }
  /** The stored headers, encoded (a view into the arena, valid until the next change), or undefined. */
  headersOf(i: number): Uint8Array | undefined {
    const p = this.pages[i >>> PAGE_BITS]!;
    const j = i & PAGE_MASK;
    if ((p.meta[j]! & HEADERS_BIT) === 0) return undefined;
    return this.arena.headers(p.keyAt[j]!, p.meta[j]! & KEY_LEN_MASK);
  }
  /**
   * An entry's key against `key[from, to)` (all of `key` by default), byte by byte in the arena (no copy):
   * negative when the entry's key sorts first.
   */
  compareKey(i: number, key: Uint8Array, from = 0, to = key.length): number {
    const p = this.pages[i >>> PAGE_BITS]!;
    const j = i & PAGE_MASK;
    const address = p.keyAt[j]!;
    const length = p.meta[j]! & KEY_LEN_MASK;
    const chunk = Math.floor(address / CHUNK_BYTES);
    const bytes = this.arena.chunks[chunk]!;
    const at = address - chunk * CHUNK_BYTES;
    const other = to - from;
    const n = Math.min(length, other);
    for (let k = 0; k < n; k++) {
      const d = bytes[at + k]! - key[from + k]!;
      if (d !== 0) return d;
    }
    return length - other;
  }
  /** Two entries' keys, as `compareKey` (no copy). */
  compareEntries(a: number, b: number): number {
    const pb = this.pages[b >>> PAGE_BITS]!;
    const address = pb.keyAt[b & PAGE_MASK]!;
    const chunk = Math.floor(address / CHUNK_BYTES);
    const at = address - chunk * CHUNK_BYTES;
    return this.compareKey(a, this.arena.chunks[chunk]!, at, at + (pb.meta[b & PAGE_MASK]! & KEY_LEN_MASK));
  }
  keyOf(i: number): Uint8Array {
    return this.arena.view(this.pages[i >>> PAGE_BITS]!.keyAt[i & PAGE_MASK]!, this.keyBytesOf(i));
  }

  /** Calls `fn` with every live entry number. */
  forEach(fn: (i: number) => void): void {
    for (let i = 0; i < this.highWater; i++) {
      if ((this.pages[i >>> PAGE_BITS]!.meta[i & PAGE_MASK]! & KEY_LEN_MASK) !== 0) fn(i);
    }
  }

  /** Heap bytes of the structure (slots, pages, key arena, key order), for stats and the memory benchmark. */
  heapBytes(): number {
    return (
      this.slots.byteLength +
      this.pages.length * PAGE * ENTRY_BYTES +
      this.arena.heapBytes() +
      this.keyOrderBytes()
    );
  }

  private write(i: number, v: EntryValue): void {
    const p = this.pages[i >>> PAGE_BITS]!;
    const j = i & PAGE_MASK;
    const typeId = this.types.intern(v.contentType);
    if (typeId === OVERFLOW_TYPE) this.types.overflow.set(i, v.contentType ?? "");
    else this.types.overflow.delete(i);
    const was = p.meta[j]!;
    if ((was & TOMBSTONE_BIT) !== 0) this.tombstones--;
    if (v.tombstone) this.tombstones++;
    p.meta[j] =
      ((was & (KEY_LEN_MASK | HEADERS_BIT)) | (typeId << TYPE_SHIFT) | (v.tombstone ? TOMBSTONE_BIT : 0)) >>>
      0;
    p.volume[j] = v.volume;
    p.offset[j] = v.offset;
    p.size[j] = v.size;
    p.crc[j] = v.bodyCrc;
    p.stamp[j] = v.version.stamp;
    p.origin[j] = v.version.origin;
  }

  /**
   * Gives an entry new stored headers: they live after its key in the arena, so a change copies the key and
   * them to a new place (the old bytes are garbage for the arena's compaction).
   */
  private rewriteHeaders(i: number, headers: Uint8Array | undefined): void {
    const old = this.headersOf(i);
    if (old === undefined && headers === undefined) return;
    if (old !== undefined && headers !== undefined && Buffer.compare(old, headers) === 0) return;
    const p = this.pages[i >>> PAGE_BITS]!;
    const j = i & PAGE_MASK;
    const span = this.spanOf(i);
    p.keyAt[j] = this.arena.add(this.keyOf(i), headers);
    p.meta[j] = ((p.meta[j]! & ~HEADERS_BIT) | (headers ? HEADERS_BIT : 0)) >>> 0;
    this.arena.free(span);
    if (this.arena.wantsCompaction()) this.compactArena();
  }

  /** Arena bytes of an entry: its key, and its stored headers with their length. */
  private spanOf(i: number): number {
    const headers = this.headersOf(i);
    return this.keyBytesOf(i) + (headers ? 2 + headers.length : 0);
  }

  /** The key's hashes into `scratch`, read in place in the arena. */
  private hashKey(i: number): void {
    const address = this.pages[i >>> PAGE_BITS]!.keyAt[i & PAGE_MASK]!;
    const chunk = Math.floor(address / CHUNK_BYTES);
    const at = address - chunk * CHUNK_BYTES;
    keyHashes(this.arena.chunks[chunk]!, at, at + this.keyBytesOf(i));
  }

  /** XORs the entry's hash into (or out of) its bucket's digest. */
  private toggleHash(i: number): void {
    this.hashKey(i);
    this.toggleHashed(i, bucketOfScratch());
  }

  /** `toggleHash` with the key's hashes already in `scratch`. */
  private toggleHashed(i: number, b: number): void {
    const p = this.pages[i >>> PAGE_BITS]!;
    const j = i & PAGE_MASK;
    const meta = p.meta[j]!;
    const flags =
      ((meta & TOMBSTONE_BIT) !== 0 ? ENTRY_TOMBSTONE : 0) | ((meta & DAMAGED_BIT) !== 0 ? ENTRY_DAMAGED : 0);
    entryHash(p.stamp[j]!, p.origin[j]!, p.crc[j]!, p.size[j]!, flags);
    this.digest[b * 2] = this.digest[b * 2]! ^ scratch[0]!;
    this.digest[b * 2 + 1] = this.digest[b * 2 + 1]! ^ scratch[1]!;
  }

  /** Puts a new entry on its bucket's list and into its digest (one hash of its key for both). */
  private linkAndHash(i: number): void {
    this.hashKey(i);
    const b = bucketOfScratch();
    const p = this.pages[i >>> PAGE_BITS]!;
    const head = this.bucketHead[b]!;
    p.bnext[i & PAGE_MASK] = head;
    p.bprev[i & PAGE_MASK] = -1;
    if (head >= 0) this.pages[head >>> PAGE_BITS]!.bprev[head & PAGE_MASK] = i;
    this.bucketHead[b] = i;
    this.bucketSize[b]!++;
    this.toggleHashed(i, b);
  }

  private unlink(i: number): void {
    const p = this.pages[i >>> PAGE_BITS]!;
    const next = p.bnext[i & PAGE_MASK]!;
    const prev = p.bprev[i & PAGE_MASK]!;
    if (next >= 0) this.pages[next >>> PAGE_BITS]!.bprev[next & PAGE_MASK] = prev;
    this.hashKey(i);
    const b = bucketOfScratch();
    if (prev >= 0) this.pages[prev >>> PAGE_BITS]!.bnext[prev & PAGE_MASK] = next;
    else this.bucketHead[b] = next;
    this.bucketSize[b]!--;
  }

  private matches(i: number, key: Uint8Array): boolean {
    const p = this.pages[i >>> PAGE_BITS]!;
    const j = i & PAGE_MASK;
    return (p.meta[j]! & KEY_LEN_MASK) === key.length && this.arena.equals(p.keyAt[j]!, key);
  }

  private placeSlot(hash: number, entry: number): void {
    let s = hash & this.mask;
    while (this.slots[s] !== 0) s = (s + 1) & this.mask;
    this.slots[s] = entry + 1;
  }

  private resize(slotCount: number): void {
    this.slots = new Int32Array(slotCount);
    this.mask = slotCount - 1;
    this.forEach((i) => this.placeSlot(this.hash(this.keyOf(i)), i));
  }

  private allocEntry(): number {
    if (this.freeHead >= 0) {
      const i = this.freeHead;
      this.freeHead = this.pages[i >>> PAGE_BITS]!.keyAt[i & PAGE_MASK]!;
      return i;
    }
    const i = this.highWater++;
    if (i >>> PAGE_BITS >= this.pages.length) this.pages.push(newPage());
    return i;
  }

  private freeEntry(i: number): void {
    const p = this.pages[i >>> PAGE_BITS]!;
    const j = i & PAGE_MASK;
    this.arena.free(this.spanOf(i));
    this.types.overflow.delete(i);
    p.meta[j] = 0;
    p.keyAt[j] = this.freeHead;
    this.freeHead = i;
  }

  private compactArena(): void {
    const fresh = new KeyArena();
    this.forEach((i) => {
      this.pages[i >>> PAGE_BITS]!.keyAt[i & PAGE_MASK] = fresh.add(this.keyOf(i), this.headersOf(i));
    });
    this.arena = fresh;
  }

  /** FNV-1a over the key's bytes, seeded, with a final avalanche so that the low bits (the slot) mix well. */
  private hash(key: Uint8Array): number {
    let h = (0x811c9dc5 ^ this.seed) >>> 0;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
    return fmix32(h);
  }
}

export { CHUNK_BYTES };
