/** An entry of a `SweepList`: where it sits in the list, -1 once removed. */
export interface Swept {
  slot: number;
}

/**
 * The entries a periodic sweep looks at (the body timeouts of uploads in flight, the write timeouts of their
 * replica writes): unordered, each entry knowing its slot, so adding and removing are O(1) without hashing,
 * which matters when an entry comes and goes with every small request. The sweep timer runs only while there
 * are entries, and does not keep the process alive.
 */
export class SweepList<E extends Swept> {
  private entries: E[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly everyMs: number,
    /** Called every `everyMs` with the entries; it may remove some (the list is not changed under it). */
    private readonly sweep: (entries: readonly E[]) => void,
  ) {}

  add(entry: E): void {
    entry.slot = this.entries.length;
    this.entries.push(entry);
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.tick(), this.everyMs);
      this.timer.unref();
    }
  }

  remove(entry: E): void {
    const i = entry.slot;
    if (i < 0) return;
    const last = this.entries.pop()!;
    if (last !== entry) {
      this.entries[i] = last;
      last.slot = i;
    }
    entry.slot = -1;
  }

  /** Stops the sweep and forgets every entry. */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const entry of this.entries) entry.slot = -1;
    this.entries = [];
  }

  /** One sweep now (also what the timer runs). */
  tick(): void {
    if (this.entries.length === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    this.sweep([...this.entries]);
  }
}
