import { hash32 } from "./hash.js";

/**
 * Consistent-hash placement with virtual positions: each member owns `virtualNodes` points on a 32-bit
 * circle; a key belongs to the member of the first point at or after hash(key), and its replicas to the next
 * distinct members clockwise. With ≥ 100 points per member the busiest member carries ~1.2× the mean and a
 * lost member's keys spread over dozens of heirs instead of one "next" member (the seed's cache idea, made
 * even). Lookups are a hash and a binary search over a typed array.
 */
export class HashRing {
  private readonly points: Uint32Array;
  private readonly owners: Uint32Array;
  private readonly ids: string[];

  constructor(
    members: Iterable<string>,
    readonly virtualNodes = 256,
  ) {
    this.ids = [...new Set(members)].sort();
    const n = this.ids.length * virtualNodes;
    const pairs: Array<[number, number]> = new Array<[number, number]>(n);
    let k = 0;
    this.ids.forEach((id, idx) => {
      for (let v = 0; v < virtualNodes; v++) pairs[k++] = [hash32(`${id}#${v}`), idx];
    });
    pairs.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    this.points = new Uint32Array(n);
    this.owners = new Uint32Array(n);
    pairs.forEach(([p, o], i) => {
      this.points[i] = p;
      this.owners[i] = o;
    });
  }

  get members(): readonly string[] {
    return this.ids;
  }

  /** The member that owns `key`, or undefined when the ring is empty. */
  owner(key: string): string | undefined {
    if (this.points.length === 0) return undefined;
    return this.ids[this.owners[this.firstAt(hash32(key))] as number];
  }

  /** The first `count` distinct members clockwise from `key` (fewer if the ring has fewer). */
  ownersOf(key: string, count: number): string[] {
    const out: string[] = [];
    const n = this.points.length;
    if (n === 0 || count <= 0) return out;
    const want = Math.min(count, this.ids.length);
    let i = this.firstAt(hash32(key));
    for (let seen = 0; seen < n && out.length < want; seen++, i = (i + 1) % n) {
      const id = this.ids[this.owners[i] as number] as string;
      if (!out.includes(id)) out.push(id);
    }
    return out;
  }

  private firstAt(h: number): number {
    const p = this.points;
    let lo = 0;
    let hi = p.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((p[mid] as number) < h) lo = mid + 1;
      else hi = mid;
    }
    return lo === p.length ? 0 : lo;
  }
}
