import { Counter, Gauge, type Registry } from "prom-client";
import type { QueueStats, ReplicationQueue } from "../queue/types.js";
import type { Outcome } from "./copier.js";
import { RateMeter } from "./rate.js";

/** `GET /stats` of a replicator. */
export interface ReplicatorStatsJson {
  /** Tasks waiting or leased in the queue (all replicators). */
  depth: number;
  leased: number;
  /** Age of the oldest task not yet done, ms: the replication lag. */
  oldestTaskAgeMs: number;
  /** Dead letters in the queue (all replicators). */
  deadLetters: number;
  /** Tasks in the queue waiting for a target that is down or full (all replicators); they spend no attempt. */
  unreachable: number;
  /** This replicator since it started: */
  copies: number;
  copiesPerSec: number;
  bytes: number;
  bytesPerSec: number;
  skipped: number;
  deletes: number;
  superseded: number;
  failures: number;
  deadLettered: number;
  /** Tasks given back because their target was down or full (each time, no attempt spent). */
  heldBack: number;
  inflight: number;
  /** Targets paused after transport failures (their tasks wait with backoff). */
  targetsDown: string[];
  queueError?: string;
}

const OUTCOMES = ["copied", "skipped", "deleted", "superseded", "target-down", "retry", "dead"] as const;

/** Counters of one replicator, as JSON for /stats and as Prometheus metrics. */
export class ReplicatorStats {
  copies = 0;
  bytes = 0;
  skipped = 0;
  deletes = 0;
  superseded = 0;
  failures = 0;
  deadLettered = 0;
  heldBack = 0;
  private readonly copyRate = new RateMeter(5);
  private readonly byteRate = new RateMeter(5);
  private readonly tasks: Counter<"outcome">;
  private readonly bytesCounter: Counter;
  private readonly heldBackCounter: Counter;
  private cached: { at: number; stats: QueueStats | undefined; error?: string } = { at: 0, stats: undefined };

  constructor(
    registry: Registry,
    private readonly queue: ReplicationQueue,
    private readonly now: () => number,
  ) {
    this.tasks = new Counter({
      name: "backpack_replicator_tasks_total",
      help: "Tasks finished by outcome (copied, skipped, deleted, superseded, target-down, retry, dead)",
      labelNames: ["outcome"],
      registers: [registry],
    });
    for (const o of OUTCOMES) this.tasks.inc({ outcome: o }, 0);
    this.bytesCounter = new Counter({
      name: "backpack_replicator_bytes_total",
      help: "Bytes copied to targets",
      registers: [registry],
    });
    const read = (): Promise<{ stats: QueueStats | undefined }> => this.queueStats();
    const queueGauge = (name: string, help: string, pick: (s: QueueStats) => number): void => {
      new Gauge({
        name,
        help,
        registers: [registry],
        async collect() {
          const s = await read();
          if (s.stats) this.set(pick(s.stats));
        },
      });
    };
    queueGauge("backpack_replication_queue_depth", "Tasks waiting or leased", (s) => s.depth);
    queueGauge(
      "backpack_replication_lag_seconds",
      "Age of the oldest task not yet done",
      (s) => s.oldestAgeMs / 1000,
    );
    queueGauge(
      "backpack_replication_dead_letters",
      "Tasks given up on (see backpack queue dead-letters)",
      (s) => s.deadLetters,
    );
    queueGauge(
      "backpack_replication_unreachable",
      "Tasks waiting for a target node that is down or full",
      (s) => s.unreachable,
    );
    this.heldBackCounter = new Counter({
      name: "backpack_replicator_held_back_total",
      help: "Tasks given back because their target was down or full (no attempt spent)",
      registers: [registry],
    });
  }

  /** A task went back to the queue to wait for its target (down or full). */
  recordHeldBack(): void {
    this.heldBack++;
    this.heldBackCounter.inc();
  }

  record(outcome: Outcome | { kind: "dead" }): void {
    this.tasks.inc({ outcome: outcome.kind });
    const now = this.now();
    switch (outcome.kind) {
      case "copied":
        this.copies++;
        this.bytes += outcome.bytes;
        this.bytesCounter.inc(outcome.bytes);
        this.copyRate.add(1, now);
        this.byteRate.add(outcome.bytes, now);
        break;
      case "skipped":
        this.skipped++;
        break;
      case "deleted":
        this.deletes++;
        break;
      case "superseded":
        this.superseded++;
        break;
      case "dead":
        this.deadLettered++;
        break;
      default:
        this.failures++;
    }
  }

  /** Queue figures, cached briefly so that a busy /stats or /metrics does not load the queue. */
  async queueStats(): Promise<{ stats: QueueStats | undefined; error?: string }> {
    const now = this.now();
    if (now - this.cached.at < 500) return this.cached;
    try {
      this.cached = { at: now, stats: await this.queue.stats() };
    } catch (err) {
      this.cached = { at: now, stats: undefined, error: (err as Error).message };
    }
    return this.cached;
  }

  async json(inflight: number, targetsDown: string[]): Promise<ReplicatorStatsJson> {
    const q = await this.queueStats();
    const now = this.now();
    return {
      depth: q.stats?.depth ?? -1,
      leased: q.stats?.leased ?? -1,
      oldestTaskAgeMs: q.stats?.oldestAgeMs ?? -1,
      deadLetters: q.stats?.deadLetters ?? -1,
      unreachable: q.stats?.unreachable ?? -1,
      copies: this.copies,
      copiesPerSec: round(this.copyRate.perSecond(now)),
      bytes: this.bytes,
      bytesPerSec: Math.round(this.byteRate.perSecond(now)),
      skipped: this.skipped,
      deletes: this.deletes,
      superseded: this.superseded,
      failures: this.failures,
      deadLettered: this.deadLettered,
      heldBack: this.heldBack,
      inflight,
      targetsDown,
      ...(q.error ? { queueError: q.error } : {}),
    };
  }
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
