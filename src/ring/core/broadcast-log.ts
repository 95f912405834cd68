/** One delta broadcast over the ring overlay. */
export interface Broadcast {
  origin: string;
  seq: number;
  data: unknown;
  /** Overlay hops it travelled to reach this member (0 at the origin). */
  hops: number;
}

/**
 * De-duplication of flooded broadcasts by (origin, seq), plus the last `capacity` broadcasts kept so that
 * anti-entropy can hand a member what the flood missed. Seen ids expire after `ttlMs` (a member that
 * re-sends the same id after that is a new broadcast; origins number theirs from a boot-unique base).
 */
export class BroadcastLog {
  private readonly seen = new Map<string, number>();
  private readonly recent: Broadcast[] = [];

  constructor(
    private readonly capacity: number,
    private readonly ttlMs = 600_000,
  ) {}

  /** Records a broadcast; false when it was already seen. */
  add(b: Broadcast, now: number): boolean {
    const key = `${b.origin}\u0000${b.seq}`;
    if (this.seen.has(key)) return false;
    this.seen.set(key, now + this.ttlMs);
    this.recent.push(b);
    if (this.recent.length > this.capacity) this.recent.shift();
    return true;
  }

  ids(): Array<[string, number]> {
    return this.recent.map((b) => [b.origin, b.seq]);
  }

  /** Recent broadcasts whose ids are not in `known`. */
  missingFrom(known: ReadonlyArray<[string, number]>): Broadcast[] {
    const have = new Set(known.map(([o, s]) => `${o}\u0000${s}`));
    return this.recent.filter((b) => !have.has(`${b.origin}\u0000${b.seq}`));
  }

  prune(now: number): void {
    for (const [k, exp] of this.seen) if (exp <= now) this.seen.delete(k);
  }
}
