import { ContentTypes, OVERFLOW_TYPE } from "./content-types.js";
import type { Version } from "../common/version.js";
import { CHUNK_BYTES, KeyArena } from "./key-arena.js";

/**
 * The in-memory index: key → where the object's record lives and what the node answers about it without I/O.
 * Built for about 50 bytes of heap per object beyond the key's own bytes: an open-addressing hash table
 * (linear probing, backward-shift deletion, so no tombstone slots) of 32-bit entry numbers, entries as
 * columns of typed arrays in pages of 4,096 (growth never copies them), keys as UTF-8 in a byte arena,
 * content types interned. No objects per entry, nothing for the garbage collector to trace.
 *
 * Per entry: key address f64, packed key length + type id + tombstone flag u32, volume u32, record offset f64,
 * size f64, body CRC u32, version stamp f64, version origin u16 = 46 bytes, plus 4 bytes per hash slot at a
 * load factor of 0.375-0.75.
 *
 * A deleted key keeps an entry (a tombstone: size 0, pointing at its tombstone record) until its grace period
 * is over, so that the node refuses any write or copy older than the delete.
 */
export interface EntryValue {
  volume: number;
  offset: number;
  size: number;
  bodyCrc: number;
  version: Version;
  contentType: string | undefined;
  tombstone: boolean;
}

const PAGE_BITS = 12;
const PAGE = 1 << PAGE_BITS;
const PAGE_MASK = PAGE - 1;
const MAX_LOAD = 0.75;
const KEY_LEN_MASK = 0x7ff;
const TYPE_SHIFT = 11;
/** Bits 11-26 of `meta` are the content type id (16 bits); bit 30 marks a tombstone. */
const TYPE_MASK = 0xffff;
const TOMBSTONE_BIT = 1 << 30;
/** Bytes of one entry across its columns (see the class comment). */
export const ENTRY_BYTES = 46;

export interface Page {
  keyAt: Float64Array;
  meta: Uint32Array;
  volume: Uint32Array;
  offset: Float64Array;
  size: Float64Array;
  crc: Uint32Array;
  stamp: Float64Array;
  origin: Uint16Array;
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
    p.keyAt[j] = this.arena.add(key);
    p.meta[j] = key.length;
    this.write(i, v);
    this.placeSlot(this.hash(key), i);
    this.count++;
    return i;
  }

  /** Rewrites an entry's values (an overwrite, or a record moved by compaction). */
  update(i: number, v: EntryValue): void {
    this.write(i, v);
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
  contentTypeBytesOf(i: number): number {
    return this.types.byteLength(this.typeIdOf(i), i);
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

  /** Heap bytes of the structure (slots, pages, key arena), for stats and the memory benchmark. */
  heapBytes(): number {
    return this.slots.byteLength + this.pages.length * PAGE * ENTRY_BYTES + this.arena.heapBytes();
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
    p.meta[j] = ((was & KEY_LEN_MASK) | (typeId << TYPE_SHIFT) | (v.tombstone ? TOMBSTONE_BIT : 0)) >>> 0;
    p.volume[j] = v.volume;
    p.offset[j] = v.offset;
    p.size[j] = v.size;
    p.crc[j] = v.bodyCrc;
    p.stamp[j] = v.version.stamp;
    p.origin[j] = v.version.origin;
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
    this.arena.free(p.meta[j]! & KEY_LEN_MASK);
    this.types.overflow.delete(i);
    p.meta[j] = 0;
    p.keyAt[j] = this.freeHead;
    this.freeHead = i;
  }

  private compactArena(): void {
    const fresh = new KeyArena();
    this.forEach((i) => {
      this.pages[i >>> PAGE_BITS]!.keyAt[i & PAGE_MASK] = fresh.add(this.keyOf(i));
    });
    this.arena = fresh;
  }

  /** FNV-1a over the key's bytes, seeded, with a final avalanche so that the low bits (the slot) mix well. */
  private hash(key: Uint8Array): number {
    let h = (0x811c9dc5 ^ this.seed) >>> 0;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
  }
}

export { CHUNK_BYTES };
