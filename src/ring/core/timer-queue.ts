import { MinHeap, type HeapEntry } from "./min-heap.js";

export type TimerKind =
  | "probe"
  | "probe-timeout"
  | "probe-end"
  | "relay-nack"
  | "suspicion"
  | "token-release"
  | "token-watchdog"
  | "heal"
  | "join"
  | "gossip";

export interface Timer extends HeapEntry {
  kind: TimerKind;
  key: string | number;
  /** Already put off once (see `RingCore.advance`): fires however late it is. */
  deferred?: boolean;
}

/**
 * Virtual timers of the pure core: the core asks for "wake me at t" and the driver (real transport or
 * simulator) calls `advance(now)`; nothing here touches a real clock. Entries are never cancelled, the core
 * checks on firing whether the timer still means something (cheaper than deleting from a heap).
 */
export class TimerQueue {
  private readonly heap = new MinHeap<Timer>();
  private order = 0;

  at(at: number, kind: TimerKind, key: string | number = 0, deferred = false): void {
    this.heap.push({ at, order: this.order++, kind, key, ...(deferred ? { deferred } : {}) });
  }

  next(): number | undefined {
    return this.heap.peek()?.at;
  }

  /** The next timer due at or before `now`, removed from the queue. */
  popDue(now: number): Timer | undefined {
    const top = this.heap.peek();
    if (!top || top.at > now) return undefined;
    return this.heap.pop();
  }

  clear(): void {
    this.heap.clear();
  }
}
