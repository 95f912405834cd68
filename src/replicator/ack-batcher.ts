import type { Logger } from "../common/logger.js";
import type { ReplicationQueue } from "../queue/types.js";

/** Acks sent together: one queue round trip per batch instead of one per task. */
const MAX_BATCH = 200;
/** How long an ack may wait for company; short, so that the queue's depth stays honest. */
const LINGER_MS = 5;

/**
 * Collects acknowledgements and sends them in batches. An ack that cannot be sent is not retried here: the
 * lease runs out, the task comes back, and the copy finds the target already holding it (skipped).
 */
export class AckBatcher {
  private ids: string[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly queue: ReplicationQueue,
    private readonly log: Logger,
  ) {}

  add(id: string): void {
    this.ids.push(id);
    if (this.ids.length >= MAX_BATCH) this.send();
    else this.timer ??= setTimeout(() => this.send(), LINGER_MS);
  }

  async flush(): Promise<void> {
    this.send();
    await this.sending;
  }

  private send(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.ids.length === 0) return;
    const ids = this.ids;
    this.ids = [];
    this.sending = this.sending.then(() =>
      this.queue.ack(ids).catch((err: unknown) => {
        this.log.warn(
          { count: ids.length, err: (err as Error).message },
          "acks not sent; the tasks will be redone",
        );
      }),
    );
  }
}
