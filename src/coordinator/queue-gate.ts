import { setTimeout as sleep } from "node:timers/promises";
import { BackpackError } from "../common/errors.js";
import { withTimeout } from "../common/timeout.js";
import { parseHealth, type ShardHealth } from "../queue/health.js";
import type { FoundTask, QueueStats, ReplicationQueue, ReplicationTask } from "../queue/types.js";

/** Uploads whose tasks go to the queue in one push at most (bounds one Redis script's work). */
const MAX_BATCH_PUSHES = 256;
/** Pushes in flight at once; more uploads wait for the next batch. */
const MAX_INFLIGHT = 4;
/** How often the backlog is read while uploads come in, and how often a waiting upload looks again. */
const BACKLOG_POLL_MS = 100;
/** The longest an upload waits for the backlog to shrink; then it goes ahead. */
const BACKLOG_WAIT_MS = 5_000;

/**
 * The replication queue as the coordinator uses it: every call bounded by a timeout (a Redis client may hold
 * commands while its servers are away), and after a failure the queue is skipped for `retryMs` so that uploads
 * go straight to direct copies instead of each waiting out the timeout. No queue at all (the cluster map has no
 * queue settings) is the same as a queue that is down.
 */
export class QueueGate {
  private downUntil = 0;
  private waiting: {
    tasks: readonly ReplicationTask[];
    resolve: () => void;
    reject: (err: Error) => void;
  }[] = [];
  private inflight = 0;
  /** Copies due in the queue, as last read, and when. */
  private backlog = { due: 0, at: -Infinity };
  private reading: Promise<void> | undefined;

  constructor(
    private queue: ReplicationQueue | undefined,
    private readonly timeoutMs: number,
    private readonly retryMs: number,
    private readonly now: () => number = Date.now,
    private readonly maxBacklog = 0,
  ) {}

  /**
   * Waits while more than `maxBacklog` copies are due in the queue (the replicators are behind), at most
   * BACKLOG_WAIT_MS: uploads slow down to what replication sustains instead of piling up single copies.
   * Resolves true when it waited. No wait without a limit or a usable queue (copies are then direct).
   */
  async admit(): Promise<boolean> {
    if (this.maxBacklog <= 0) return false;
    const started = this.now();
    for (let waited = false; ; waited = true) {
      if (!this.usable) return waited;
      // A slow queue server delays an upload by one poll interval at most (the reading goes on behind it).
      if (this.now() - this.backlog.at >= BACKLOG_POLL_MS) {
        await Promise.race([this.readBacklog(), sleep(BACKLOG_POLL_MS)]);
      }
      if (this.backlog.due <= this.maxBacklog || this.now() - started >= BACKLOG_WAIT_MS) return waited;
      await sleep(BACKLOG_POLL_MS);
    }
  }

  /** One stats read at a time, shared by every upload that needs it. */
  private readBacklog(): Promise<void> {
    this.reading ??= this.stats()
      .then((s) => {
        this.backlog = { due: s?.due ?? 0, at: this.now() };
      })
      .finally(() => {
        this.reading = undefined;
      });
    return this.reading;
  }

  /** Swaps in another queue (the cluster map's queue settings changed, or the queue could be opened at last). */
  replace(queue: ReplicationQueue | undefined): void {
    this.queue = queue;
    this.downUntil = 0;
  }

  /** False when there is no queue or it failed within the last `retryMs`. */
  get usable(): boolean {
    return this.queue !== undefined && this.now() >= this.downUntil;
  }

  /**
   * Pushes durably or throws UNAVAILABLE. Pushes that arrive while `MAX_INFLIGHT` are in flight wait and go
   * together in the next call (group commit): few queue round trips under load, no added wait when idle.
   */
  async push(tasks: readonly ReplicationTask[]): Promise<void> {
    if (this.queue === undefined)
      throw new BackpackError("UNAVAILABLE", "no replication queue is configured");
    if (!this.usable) throw new BackpackError("UNAVAILABLE", "the replication queue is unavailable");
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ tasks, resolve, reject });
      if (this.inflight < MAX_INFLIGHT) void this.send();
    });
  }

  private async send(): Promise<void> {
    this.inflight++;
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0, MAX_BATCH_PUSHES);
      const queue = this.queue;
      try {
        if (queue === undefined) throw new Error("no replication queue is configured");
        await withTimeout(
          queue.push(batch.flatMap((b) => b.tasks)),
          this.timeoutMs,
          "replication queue push",
        );
        for (const b of batch) b.resolve();
      } catch (err) {
        this.downUntil = this.now() + this.retryMs;
        const e = new BackpackError(
          "UNAVAILABLE",
          `the replication queue refused the tasks: ${(err as Error).message}`,
          { cause: err },
        );
        for (const b of batch) b.reject(e);
      }
    }
    this.inflight--;
  }

  async stats(): Promise<QueueStats | undefined> {
    return this.ask((q) => q.stats(), "replication queue stats");
  }

  /** Every shard's repair health as the replicators last reported it; undefined while the queue cannot be asked. */
  async health(): Promise<ShardHealth[] | undefined> {
    const reports = await this.ask((q) => q.health(), "repair health");
    return reports && parseHealth(reports);
  }

  /** The queued tasks of one key; undefined while the queue cannot be asked. */
  async find(shard: string, key: string): Promise<FoundTask[] | undefined> {
    return this.ask((q) => q.find(shard, key), "replication queue lookup");
  }

  /** Puts every dead letter back in the queue; how many. Throws UNAVAILABLE when the queue cannot be asked. */
  async replayDeadLetters(): Promise<number> {
    return this.must((q) => q.replay(), "dead letter replay");
  }

  /** Asks the replicators to compare these shards (all when empty) now. Throws UNAVAILABLE as above. */
  async requestRepair(shards: readonly string[]): Promise<void> {
    await this.must((q) => q.requestRepair(shards), "repair request");
  }

  private async must<T>(call: (q: ReplicationQueue) => Promise<T>, what: string): Promise<T> {
    if (this.queue === undefined)
      throw new BackpackError("UNAVAILABLE", "no replication queue is configured");
    try {
      return await withTimeout(call(this.queue), this.timeoutMs, what);
    } catch (err) {
      throw new BackpackError(
        "UNAVAILABLE",
        `the replication queue did not take the ${what}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    }
  }

  private async ask<T>(call: (q: ReplicationQueue) => Promise<T>, what: string): Promise<T | undefined> {
    if (this.queue === undefined) return undefined;
    try {
      return await withTimeout(call(this.queue), this.timeoutMs, what);
    } catch {
      return undefined;
    }
  }
}
