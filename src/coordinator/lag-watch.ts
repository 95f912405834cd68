import { performance } from "node:perf_hooks";
import { SweepList } from "../common/sweep-list.js";

/** One replica's write of an upload, as the watch sees it. */
export interface ReplicaWrite {
  /**
   * How far it got: the body bytes it has taken, `Infinity` once it answered that the upload is durable, and
   * a negative number once it failed (it is then out of the race).
   */
  progress(): number;
  /** Gives the write up (its node is then handed off). Called at most once. */
  cut(): void;
}

interface Watched {
  write: ReplicaWrite;
  /** The progress seen at the last sweep, and since when it is that. */
  last: number;
  lastAt: number;
  /** Since when another replica of the upload is ahead of this one (undefined: it is not behind). */
  behindSince: number | undefined;
  cut: boolean;
}

/** One upload's replica writes; `slot` is where it sits in the watch's list (-1 once stopped). */
export interface LagEntry {
  writes: Watched[];
  slot: number;
}

/**
 * The write timeout of every upload in flight, kept by one sweep (as `IdleWatch` keeps the body timeouts): a
 * replica is cut when another replica of the same upload is ahead of it (has taken more of the body, or has
 * answered) and it has made no progress for `timeoutMs` while behind. So a node that is frozen, or much slower
 * than the others, delays an upload by about `timeoutMs` at most and is then handed off; a slowdown shared by
 * every replica (a large body's fsync, a busy disk) cuts nobody, since nobody is ahead; the node timeout bounds
 * that. The sweep runs every quarter of `timeoutMs`, so a replica is cut between 1 and 1.5 × `timeoutMs` after it
 * fell behind or stopped moving; the timer does not keep the process alive and stops when nothing is watched.
 * Time is injected (`now`), so the rule is testable without waiting.
 */
export class LagWatch {
  private readonly list: SweepList<LagEntry>;

  constructor(
    readonly timeoutMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.list = new SweepList(Math.max(5, Math.floor(timeoutMs / 4)), (entries) => this.check(entries));
  }

  /** Watches the replica writes of one upload (a single write has nobody to fall behind: not watched). */
  start(writes: readonly ReplicaWrite[]): LagEntry | undefined {
    if (writes.length < 2) return undefined;
    const now = this.now();
    const entry: LagEntry = {
      writes: writes.map((write) => ({ write, last: 0, lastAt: now, behindSince: undefined, cut: false })),
      slot: -1,
    };
    this.list.add(entry);
    return entry;
  }

  stop(entry: LagEntry | undefined): void {
    if (entry) this.list.remove(entry);
  }

  /** Stops the sweep and forgets every entry (the coordinator is stopping). */
  close(): void {
    this.list.close();
  }

  /** One pass over every upload: exposed for tests that drive the clock themselves. */
  sweep(): void {
    this.list.tick();
  }

  private check(entries: readonly LagEntry[]): void {
    const now = this.now();
    const due: Watched[] = [];
    for (const entry of entries) {
      let lead = -1;
      for (const w of entry.writes) lead = Math.max(lead, w.cut ? -1 : w.write.progress());
      for (const w of entry.writes) {
        if (w.cut) continue;
        const p = w.write.progress();
        if (p < 0 || p === Infinity) continue;
        if (p !== w.last) {
          w.last = p;
          w.lastAt = now;
        }
        if (p >= lead) {
          w.behindSince = undefined;
          continue;
        }
        w.behindSince ??= now;
        if (now - Math.max(w.lastAt, w.behindSince) >= this.timeoutMs) due.push(w);
      }
    }
    for (const w of due) {
      w.cut = true;
      w.write.cut();
    }
  }
}
