import { performance } from "node:perf_hooks";
import { SweepList } from "./sweep-list.js";

/** One watched upload body: `at` is when the client last sent something, `waiting` whether its clock runs now. */
export interface IdleEntry {
  at: number;
  waiting: boolean;
  readonly fire: () => void;
  /** Where the entry sits in the watch's list; -1 once stopped. */
  slot: number;
  /** Body bytes received in the current rate window. */
  bytes: number;
  /** Time spent waiting on the client in the current rate window, up to `mark`. */
  waitedMs: number;
  /** Up to when `waitedMs` is counted. */
  mark: number;
}

/**
 * The body timeouts of every upload in flight, kept by one sweep instead of a timer per request: arming,
 * refreshing and clearing a timer for each small upload cost more than the rest of its bookkeeping. An entry
 * fires once, and is dropped, when its client
 *
 * - has been silent for `idleMs` while the server was waiting on it, or
 * - with `minBytesPerSec` > 0: sent fewer than that many bytes per second over a window of `idleMs` of
 *   waiting, so that a client trickling a byte now and then cannot hold an upload (and what it reserves)
 *   open forever.
 *
 * Only time spent waiting on the client counts: while the server is busy with what came, or holds the client
 * back (`pause`), no silence and no slowness is the client's. The sweep runs every quarter of `idleMs`, so a
 * silent client is cut between `idleMs` and 1.25 × `idleMs` after its last bytes, a slow one at the end of its
 * first window below the rate; the sweep timer does not keep the process alive and stops when nothing is
 * watched. Used by the storage node and the coordinator alike.
 */
export class IdleWatch {
  private readonly list: SweepList<IdleEntry>;

  constructor(
    readonly idleMs: number,
    private readonly now: () => number = () => performance.now(),
    /** Slowest average body rate allowed over a window of `idleMs` of waiting; 0 checks silence only. */
    readonly minBytesPerSec = 0,
  ) {
    this.list = new SweepList(Math.max(5, Math.floor(idleMs / 4)), (entries) => this.sweep(entries));
  }

  /** Starts watching (waiting from now); `fire` runs once if the client stays silent or too slow. */
  start(fire: () => void): IdleEntry {
    const now = this.now();
    const entry: IdleEntry = { at: now, waiting: true, fire, slot: -1, bytes: 0, waitedMs: 0, mark: now };
    this.list.add(entry);
    return entry;
  }

  /** The server waits on the client (again, or after it sent something): its silence counts from now. */
  touch(entry: IdleEntry): void {
    const now = this.now();
    if (entry.waiting) entry.waitedMs += now - entry.mark;
    entry.mark = now;
    entry.at = now;
    entry.waiting = true;
  }

  /** The server is not waiting on the client (it is busy with what came): nothing counts until `touch`. */
  pause(entry: IdleEntry): void {
    if (entry.waiting) {
      const now = this.now();
      entry.waitedMs += now - entry.mark;
      entry.mark = now;
    }
    entry.waiting = false;
  }

  /** Counts body bytes the client sent (for the minimum rate). */
  received(entry: IdleEntry, bytes: number): void {
    entry.bytes += bytes;
  }

  stop(entry: IdleEntry): void {
    this.list.remove(entry);
  }

  /** Stops the sweep and forgets every entry (the server is stopping). */
  close(): void {
    this.list.close();
  }

  private sweep(entries: readonly IdleEntry[]): void {
    const now = this.now();
    const silentSince = now - this.idleMs;
    const due = entries.filter((e) => (e.waiting && e.at <= silentSince) || this.tooSlow(e, now));
    for (const entry of due) {
      if (entry.slot < 0) continue; // stopped by an earlier entry's fire
      this.stop(entry);
      entry.fire();
    }
  }

  /** Closes the entry's rate window once it holds `idleMs` of waiting: true when it came in under the rate. */
  private tooSlow(entry: IdleEntry, now: number): boolean {
    if (this.minBytesPerSec <= 0) return false;
    if (entry.waiting) {
      entry.waitedMs += now - entry.mark;
      entry.mark = now;
    }
    if (entry.waitedMs < this.idleMs) return false;
    const slow = entry.bytes * 1000 < this.minBytesPerSec * entry.waitedMs;
    entry.bytes = 0;
    entry.waitedMs = 0;
    return slow;
  }
}
