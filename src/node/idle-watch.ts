import { performance } from "node:perf_hooks";

/** One watched wait: `at` is when the client last sent something, `waiting` whether its clock runs now. */
export interface IdleEntry {
  at: number;
  waiting: boolean;
  readonly fire: () => void;
  /** Where the entry sits in the watch's list; -1 once stopped. */
  slot: number;
}

/**
 * The body timeout of every upload in flight, kept by one sweep instead of a timer per request: arming,
 * refreshing and clearing a timer for each small upload cost more than the rest of its bookkeeping. An entry
 * whose client has been silent for `idleMs` while it was waiting fires once and is dropped. The sweep runs
 * every quarter of `idleMs`, so a silent client is cut between `idleMs` and 1.25 × `idleMs` after its last
 * bytes; the sweep timer does not keep the process alive and stops when nothing is watched.
 */
export class IdleWatch {
  /** Unordered; an entry knows its slot, so adding and removing are O(1) without hashing. */
  private entries: IdleEntry[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly sweepMs: number;

  constructor(
    readonly idleMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.sweepMs = Math.max(5, Math.floor(idleMs / 4));
  }

  /** Starts watching (waiting from now); `fire` runs once if the client stays silent for `idleMs`. */
  start(fire: () => void): IdleEntry {
    const entry: IdleEntry = { at: this.now(), waiting: true, fire, slot: this.entries.length };
    this.entries.push(entry);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), this.sweepMs);
      this.timer.unref();
    }
    return entry;
  }

  /** The node waits on the client (again, or after it sent something): its silence counts from now. */
  touch(entry: IdleEntry): void {
    entry.at = this.now();
    entry.waiting = true;
  }

  /** The node is not waiting on the client (it is storing what came): no silence counts until `touch`. */
  pause(entry: IdleEntry): void {
    entry.waiting = false;
  }

  stop(entry: IdleEntry): void {
    const i = entry.slot;
    if (i < 0) return;
    const last = this.entries.pop()!;
    if (last !== entry) {
      this.entries[i] = last;
      last.slot = i;
    }
    entry.slot = -1;
  }

  /** Stops the sweep and forgets every entry (the server is stopping). */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const entry of this.entries) entry.slot = -1;
    this.entries = [];
  }

  private sweep(): void {
    if (this.entries.length === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    const silentSince = this.now() - this.idleMs;
    const due = this.entries.filter((e) => e.waiting && e.at <= silentSince);
    for (const entry of due) {
      if (entry.slot < 0) continue; // stopped by an earlier entry's fire
      this.stop(entry);
      entry.fire();
    }
  }
}
