/**
 * Lets a fault schedule hold a load back for a moment: `pause()` stops new requests at the gate and resolves
 * once none is in flight (so nothing can be acknowledged until `resume()`); the requests held meanwhile go on
 * after `resume()`.
 */
export class LoadGate {
  private inflight = 0;
  private held: { opened: Promise<void>; open: () => void } | undefined;
  private idle: (() => void)[] = [];

  async run<T>(request: () => Promise<T>): Promise<T> {
    while (this.held) await this.held.opened;
    this.inflight++;
    try {
      return await request();
    } finally {
      this.inflight--;
      if (this.inflight === 0) for (const resolve of this.idle.splice(0)) resolve();
    }
  }

  async pause(): Promise<void> {
    if (!this.held) {
      let open = (): void => undefined;
      const opened = new Promise<void>((resolve) => (open = resolve));
      this.held = { opened, open };
    }
    if (this.inflight > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
  }

  resume(): void {
    const held = this.held;
    this.held = undefined;
    held?.open();
  }
}
