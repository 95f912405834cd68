/**
 * The index's entries in key order (byte order of the UTF-8 keys), kept as every change happens, for listing a
 * range of keys without a sort per request. Pure: no I/O; keys are compared through the callbacks the index
 * gives, so nothing is stored here but 32-bit entry numbers.
 *
 * Layout: a list of blocks, each a sorted run of at most BLOCK entry numbers in an `Int32Array`, the blocks in
 * key order (the shape of a B+-tree's leaves without the inner nodes: at 1M keys there are a few thousand
 * blocks, and a binary search over their first keys does what the inner levels would). An insert or a removal
 * costs a binary search (O(log n) key comparisons) and a shift inside one block (at most BLOCK entries); a
 * full block splits in two, or, when the insert is past the last key (keys written in order), a new block is
 * started so that the full one stays full, and a full block with a next one that has room moves half that room's
 * worth of its last entries there instead of splitting, which keeps blocks fuller. Memory: 4 bytes per entry
 * at a full block, 8 at a half-full one, plus about 100 bytes per block.
 */
const BLOCK = 512;
/** Entries sorted per run, and compared per merge slice, between two pauses of a build (a few ms each). */
const RUN = 8192;
const MERGE_SLICE = 32768;

export interface KeyOrder {
  /** Key of entry `i` against `key` (negative: the entry's key sorts first). */
  compare(i: number, key: Uint8Array): number;
  /** Two entries' keys. */
  compareEntries(a: number, b: number): number;
}

export class SortedKeys {
  private blocks: Int32Array[] = [];
  private sizes: number[] = [];
  size = 0;

  constructor(private readonly order: KeyOrder) {}

  /**
   * Replaces the contents with `entries` (any order), without holding the event loop for more than a few
   * milliseconds at a time (one sort of 1M keys takes seconds): runs of RUN entries are sorted, then merged
   * pairwise MERGE_SLICE entries at a time, with `pause()` awaited between slices. The index may change
   * meanwhile: an entry in `removed` (its number may already name another key) is never compared again and is
   * left out; the caller inserts what was added meanwhile once this resolves.
   */
  async rebuild(entries: number[], removed: ReadonlySet<number>, pause: () => Promise<void>): Promise<void> {
    const compare = (a: number, b: number): number => this.order.compareEntries(a, b);
    let runs: Int32Array[] = [];
    for (let at = 0; at < entries.length; at += RUN) {
      const run = entries.slice(at, at + RUN).filter((i) => !removed.has(i));
      runs.push(Int32Array.from(run.sort(compare)));
      await pause();
    }
    while (runs.length > 1) {
      const next: Int32Array[] = [];
      for (let r = 0; r < runs.length; r += 2) {
        next.push(
          r + 1 < runs.length
            ? await mergeInSlices(runs[r]!, runs[r + 1]!, compare, removed, pause)
            : runs[r]!,
        );
      }
      runs = next;
    }
    // Into blocks filled to 7/8: room for inserts before the first blocks fill up.
    const sorted = runs[0] ?? new Int32Array(0);
    const fill = (BLOCK * 7) / 8;
    this.blocks = [];
    this.sizes = [];
    this.size = 0;
    let block = new Int32Array(BLOCK);
    let n = 0;
    for (const i of sorted) {
      if (removed.has(i)) continue;
      if (n === fill) {
        this.blocks.push(block);
        this.sizes.push(n);
        block = new Int32Array(BLOCK);
        n = 0;
      }
      block[n++] = i;
      this.size++;
    }
    if (n > 0) {
      this.blocks.push(block);
      this.sizes.push(n);
    }
  }

  /** Adds entry `i` whose key is `key` (not present yet). */
  insert(i: number, key: Uint8Array): void {
    if (this.blocks.length === 0) {
      this.blocks.push(new Int32Array(BLOCK));
      this.sizes.push(0);
    }
    let b = this.blockFor(key);
    let n = this.sizes[b]!;
    let at = this.positionIn(b, key, n);
    if (n === BLOCK) {
      if (b === this.blocks.length - 1 && at === n) {
        this.blocks.push(new Int32Array(BLOCK));
        this.sizes.push(0);
        b++;
        at = 0;
      } else {
        // Room is made in the next block when it has some (so blocks stay fuller than a split leaves them),
        // else by a split; either way the last `moved` entries of this block move to the next.
        const room = b + 1 < this.blocks.length ? BLOCK - this.sizes[b + 1]! : 0;
        const moved = room >= 8 ? room >>> 1 : BLOCK / 2;
        if (room >= 8) this.shiftInto(b, moved);
        else this.split(b);
        const kept = BLOCK - moved;
        if (at > kept) {
          b++;
          at -= kept;
        }
      }
      n = this.sizes[b]!;
    }
    const block = this.blocks[b]!;
    block.copyWithin(at + 1, at, n);
    block[at] = i;
    this.sizes[b] = n + 1;
    this.size++;
  }

  /** Removes entry `i` whose key is `key`; false when it is not here. */
  remove(i: number, key: Uint8Array): boolean {
    if (this.blocks.length === 0) return false;
    const b = this.blockFor(key);
    const n = this.sizes[b]!;
    const at = this.positionIn(b, key, n);
    const block = this.blocks[b]!;
    if (at >= n || block[at] !== i) return false;
    block.copyWithin(at, at + 1, n);
    this.sizes[b] = n - 1;
    this.size--;
    if (n === 1 && this.blocks.length > 1) {
      this.blocks.splice(b, 1);
      this.sizes.splice(b, 1);
    }
    return true;
  }

  /**
   * The entries from the first key after `key` (or at it, with `inclusive`) in key order; from the first key of
   * all without a key. Valid while the structure does not change (read it within one synchronous step).
   */
  *from(key: Uint8Array | undefined, inclusive: boolean): Generator<number> {
    if (this.size === 0) return;
    let b = key === undefined ? 0 : this.blockFor(key);
    let at = key === undefined ? 0 : this.positionIn(b, key, this.sizes[b]!);
    // Keys are unique, and a key equal to `key` can only be here: a later block starts past it.
    if (
      key !== undefined &&
      !inclusive &&
      at < this.sizes[b]! &&
      this.order.compare(this.blocks[b]![at]!, key) === 0
    ) {
      at++;
    }
    for (; b < this.blocks.length; b++, at = 0) {
      const block = this.blocks[b]!;
      const n = this.sizes[b]!;
      for (; at < n; at++) yield block[at]!;
    }
  }

  /** Bytes of the blocks (for stats and the memory benchmark). */
  heapBytes(): number {
    return this.blocks.length * (BLOCK * 4 + 100);
  }

  /** The block where `key` belongs: the last one whose first key is at most `key` (0 when none is). */
  private blockFor(key: Uint8Array): number {
    let lo = 0;
    let hi = this.blocks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.sizes[mid]! > 0 && this.order.compare(this.blocks[mid]![0]!, key) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The first position in block `b` (of `n` entries) whose key is at least `key`. */
  private positionIn(b: number, key: Uint8Array, n: number): number {
    const block = this.blocks[b]!;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.order.compare(block[mid]!, key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Moves the last `k` entries of block `b` to the front of block `b + 1` (which has room for them). */
  private shiftInto(b: number, k: number): void {
    const from = this.blocks[b]!;
    const to = this.blocks[b + 1]!;
    const n = this.sizes[b]!;
    to.copyWithin(k, 0, this.sizes[b + 1]);
    to.set(from.subarray(n - k, n), 0);
    this.sizes[b] = n - k;
    this.sizes[b + 1] = this.sizes[b + 1]! + k;
  }

  private split(b: number): void {
    const block = this.blocks[b]!;
    const half = BLOCK / 2;
    const right = new Int32Array(BLOCK);
    right.set(block.subarray(half, BLOCK));
    this.blocks.splice(b + 1, 0, right);
    this.sizes.splice(b + 1, 0, BLOCK - half);
    this.sizes[b] = half;
  }
}

/** Merges two sorted runs, MERGE_SLICE entries between pauses; entries in `removed` are dropped unseen. */
async function mergeInSlices(
  a: Int32Array,
  b: Int32Array,
  compare: (x: number, y: number) => number,
  removed: ReadonlySet<number>,
  pause: () => Promise<void>,
): Promise<Int32Array> {
  const out = new Int32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let n = 0;
  while (i < a.length || j < b.length) {
    for (let step = 0; step < MERGE_SLICE && (i < a.length || j < b.length); step++) {
      if (i < a.length && removed.has(a[i]!)) i++;
      else if (j < b.length && removed.has(b[j]!)) j++;
      else if (j >= b.length || (i < a.length && compare(a[i]!, b[j]!) <= 0)) out[n++] = a[i++]!;
      else out[n++] = b[j++]!;
    }
    await pause();
  }
  return out.subarray(0, n);
}
