/**
 * Watches the targets that stopped answering (refused connections, timeouts): each is asked every `periodMs`
 * whether it answers again, and `onBack` is called once it does, so that the copies waiting for it go at once
 * instead of at the end of their backoff (which grows to `targetDownMaxMs` while a node is away). A node that
 * answers but takes no writes (disk full, overloaded) is not watched: its copies keep their backoff.
 */
export class TargetWatch {
  private readonly watched = new Set<string>();
  private readonly asking = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly probe: (target: string) => Promise<boolean>,
    private readonly onBack: (target: string) => void,
    private readonly periodMs: number,
  ) {}

  watch(target: string): void {
    this.watched.add(target);
    if (this.timer) return;
    this.timer = setInterval(() => this.round(), this.periodMs);
    this.timer.unref();
  }

  unwatch(target: string): void {
    this.watched.delete(target);
    if (this.watched.size === 0) this.stop();
  }

  stop(): void {
    this.watched.clear();
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private round(): void {
    for (const target of this.watched) {
      if (this.asking.has(target)) continue;
      this.asking.add(target);
      void this.probe(target)
        .catch(() => false)
        .then((up) => {
          this.asking.delete(target);
          if (up && this.watched.has(target)) {
            this.unwatch(target);
            this.onBack(target);
          }
        });
    }
  }
}
