import type { ClusterMap } from "../cluster/types.js";
import type { Logger } from "../common/logger.js";
import type { CoordinatorMetrics } from "./context.js";
import { withTimeout } from "../common/timeout.js";
import type { UsageTracker } from "./usage-tracker.js";

/**
 * Sends the usage deltas of this coordinator to the cluster map every `intervalMs`, in one `addUsage` call
 * (compare-and-set there, so coordinators never lose each other's updates). A failed flush (ZooKeeper away)
 * keeps the deltas for the next one; uploads go on meanwhile against the last known map.
 */
export class UsageFlusher {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly usage: UsageTracker,
    private readonly map: ClusterMap,
    private readonly intervalMs: number,
    private readonly log: Logger,
    private readonly metrics: CoordinatorMetrics,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.intervalMs);
  }

  /** Sends what is pending now; resolves when this flush (or the one already running) is over. */
  async flush(): Promise<void> {
    if (this.running) return this.running;
    const batch = this.usage.takeBatch();
    if (batch === undefined) return;
    this.running = (async () => {
      let ok = false;
      try {
        // No timeout of our own: giving up on a request that may still apply would count the batch twice. The
        // map bounds its requests itself; until this one settles, new deltas wait in the tracker.
        await this.map.addUsage(batch);
        ok = true;
      } catch (err) {
        this.log.warn({ err: (err as Error).message, batch }, "usage update failed; kept for the next flush");
      } finally {
        this.usage.settle(batch, ok);
        this.metrics.usageFlushes.inc({ result: ok ? "ok" : "failed" });
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** Stops the timer and tries to send what is left, for up to `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const deadline = Date.now() + graceMs;
    while (this.usage.dirty && Date.now() < deadline) {
      await withTimeout(this.flush(), Math.max(1, deadline - Date.now()), "usage update").catch(
        () => undefined,
      );
      if (this.usage.dirty) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (this.usage.dirty)
      this.log.error("coordinator stopped with usage deltas not written to the cluster map");
  }
}
