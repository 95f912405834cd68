import { hash32 } from "./hash.js";

/**
 * K rings derived from the live view: ring r orders the members by hash32(id, seed r). Ring 0 is the seed's
 * ring (client of my successor, server for my predecessor; the token runs on it); the union of the K rings is
 * the broadcast overlay, a near-Ramanujan expander of degree ≤ 2K. "Rebuilding the ring" after a death is
 * removing one entry here: every member whose view agrees computes the same successors, no repair protocol.
 */
export class KRings {
  private readonly rings: Array<{ pos: number[]; ids: string[] }>;
  private readonly members = new Set<string>();
  /** Raised on every change, so callers can cache what they derive. */
  version = 0;

  constructor(readonly k: number) {
    this.rings = Array.from({ length: k }, () => ({ pos: [], ids: [] }));
  }

  get size(): number {
    return this.members.size;
  }

  has(id: string): boolean {
    return this.members.has(id);
  }

  add(id: string): void {
    if (this.members.has(id)) return;
    this.version++;
    this.members.add(id);
    this.rings.forEach((ring, r) => {
      const p = ringPosition(id, r);
      const at = lowerBound(ring, p, id);
      ring.pos.splice(at, 0, p);
      ring.ids.splice(at, 0, id);
    });
  }

  /** Adds many members at once: one sort per ring instead of a splice per member. */
  addAll(ids: Iterable<string>): void {
    this.version++;
    for (const id of ids) this.members.add(id);
    this.rings.forEach((ring, r) => {
      const entries = [...this.members].map((id) => [ringPosition(id, r), id] as const);
      entries.sort((x, y) => x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0));
      ring.pos = entries.map((e) => e[0]);
      ring.ids = entries.map((e) => e[1]);
    });
  }

  /** Becomes a copy of `other` (same K). */
  copyFrom(other: KRings): void {
    this.version++;
    this.members.clear();
    for (const id of other.members) this.members.add(id);
    other.rings.forEach((ring, r) => {
      const mine = this.rings[r];
      if (mine) {
        mine.pos = [...ring.pos];
        mine.ids = [...ring.ids];
      }
    });
  }

  remove(id: string): void {
    if (!this.members.delete(id)) return;
    this.version++;
    this.rings.forEach((ring, r) => {
      const at = lowerBound(ring, ringPosition(id, r), id);
      ring.pos.splice(at, 1);
      ring.ids.splice(at, 1);
    });
  }

  /** The member `steps` places after `id` on ring r (negative steps go backwards); undefined if alone. */
  successor(r: number, id: string, steps = 1): string | undefined {
    const ring = this.rings[r];
    if (!ring || ring.ids.length < 2 || !this.members.has(id)) return undefined;
    const at = lowerBound(ring, ringPosition(id, r), id);
    const n = ring.ids.length;
    return ring.ids[(((at + steps) % n) + n) % n];
  }

  /** True when going from `id` to its successor on ring r wraps past the top of the ring (a lap ends). */
  wrapsAfter(r: number, id: string): boolean {
    const ring = this.rings[r];
    if (!ring || !this.members.has(id)) return true;
    return lowerBound(ring, ringPosition(id, r), id) === ring.ids.length - 1;
  }

  /**
   * Successors and predecessors on every ring, each once, never `id` itself; members for which `skip` is
   * true are stepped over (the next one along the ring is taken).
   */
  neighbours(id: string, skip?: (id: string) => boolean): string[] {
    const out: string[] = [];
    const n = this.rings[0]?.ids.length ?? 0;
    for (let r = 0; r < this.k; r++) {
      for (const dir of [1, -1]) {
        for (let step = 1; step < n; step++) {
          const m = this.successor(r, id, dir * step);
          if (m === undefined || m === id) break;
          if (skip?.(m)) continue;
          if (!out.includes(m)) out.push(m);
          break;
        }
      }
    }
    return out;
  }

  /** The member at the top of ring r (lowest position): it regenerates a lost token. */
  first(r: number): string | undefined {
    return this.rings[r]?.ids[0];
  }

  /** A uniformly random member (`u` in [0, 1) from the injected random source). */
  pick(u: number): string | undefined {
    const ids = this.rings[0]?.ids ?? [];
    return ids[Math.floor(u * ids.length)];
  }

  /** Ring r in order (a copy). */
  order(r: number): string[] {
    return [...(this.rings[r]?.ids ?? [])];
  }
}

const positions = new Map<string, number[]>();

/** Position of `id` on ring r (memoized: successors are looked up on every probe). */
export function ringPosition(id: string, r: number): number {
  let p = positions.get(id);
  if (p === undefined) {
    if (positions.size > 200_000) positions.clear();
    p = [];
    positions.set(id, p);
  }
  let v = p[r];
  if (v === undefined) {
    v = hash32(id, r + 1);
    p[r] = v;
  }
  return v;
}

function lowerBound(ring: { pos: number[]; ids: string[] }, p: number, id: string): number {
  let lo = 0;
  let hi = ring.pos.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const mp = ring.pos[mid] as number;
    if (mp < p || (mp === p && (ring.ids[mid] as string) < id)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
