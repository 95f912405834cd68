import type { ServerResponse } from "node:http";
import { Gauge, type Registry } from "prom-client";
import { sendJson } from "../common/http.js";
import type { QueueGate } from "./queue-gate.js";
import type { CoordinatorStats } from "../client/coordinator-client.js";
import type { CoordinatorContext } from "./context.js";

export type { CoordinatorStats };

/** Uploads being received now, and the bytes of their bodies held in memory. */
export interface UploadsNow {
  inflight: number;
  bufferedBytes: number;
}

/** The original's `/stats` (same field names and meaning), then a few of ours. */
export async function collectStats(
  ctx: CoordinatorContext,
  startedAt: number,
  uploads: UploadsNow = { inflight: 0, bufferedBytes: 0 },
): Promise<CoordinatorStats> {
  const snapshot = ctx.map.snapshot();
  let total = 0;
  let used = 0;
  let writable = 0;
  const shards = Object.values(snapshot.shards);
  for (const shard of shards) {
    const shardUsed = Math.max(0, shard.used + ctx.usage.unflushed(shard.id));
    total += shard.capacity;
    used += shardUsed;
    if (shard.enabled && shardUsed < shard.capacity) writable++;
  }
  const [queue, health] = await Promise.all([ctx.queue.stats(), ctx.queue.health()]);
  return {
    uptime: Math.max(0, Math.floor((ctx.now() - startedAt) / 1000)),
    processed_uploads: ctx.counters.processedUploads,
    processed_bytes: ctx.counters.processedBytes,
    failed_uploads: ctx.counters.failedUploads,
    total_size: total,
    used_size: used,
    usage_ratio: total > 0 ? used / total : 0,
    available_space: Math.max(0, total - used),
    total_shards: shards.length,
    writable_shards: writable,
    queue_length: queue?.depth ?? null,
    aborted_uploads: ctx.counters.abortedUploads,
    throttled_uploads: ctx.counters.throttledUploads,
    uploads_in_flight: uploads.inflight,
    buffered_upload_bytes: uploads.bufferedBytes,
    replication_lag_ms: queue?.oldestAgeMs ?? null,
    queue_unreachable: queue?.unreachable ?? null,
    cluster_map_connected: ctx.map.connected,
    suspect_servers: ctx.health.suspects(),
    dead_letters: queue?.deadLetters ?? null,
    processed_reads: ctx.counters.reads,
    read_bytes: ctx.counters.readBytes,
    under_replicated_files:
      health === undefined || health.length === 0 ? null : health.reduce((n, h) => n + h.underReplicated, 0),
    repair: health ?? [],
    settings: ctx.settings.status(),
  };
}

export async function handleStats(
  ctx: CoordinatorContext,
  res: ServerResponse,
  startedAt: number,
  uploads?: UploadsNow,
): Promise<void> {
  sendJson(res, 200, await collectStats(ctx, startedAt, uploads));
}

/**
 * The repair health on `/metrics`, read from the queue at each scrape: per shard the under-replicated files,
 * the end of the last complete comparison and the repairs done; per server a refill's files left and the
 * scrub's progress.
 */
export function registerHealthMetrics(registry: Registry, queue: QueueGate): void {
  const registers = [registry];
  // A scrape collects every gauge at once: they share one read of the queue, which fills them all.
  let filling: Promise<void> | undefined;
  const collect = (): Promise<void> =>
    (filling ??= fill().finally(() => {
      filling = undefined;
    }));
  const gauge = <L extends string>(name: string, help: string, labelNames: L[]): Gauge<L> =>
    new Gauge({ name, help, labelNames, registers, collect });
  const under = gauge(
    "backpack_shard_under_replicated_files",
    "Files with fewer verified copies than the shard has servers, as the replicators last reported",
    ["shard"],
  );
  const compared = gauge(
    "backpack_shard_last_comparison_timestamp_seconds",
    "When the last complete comparison of the shard's replicas ended",
    ["shard"],
  );
  const repairs = gauge(
    "backpack_shard_repairs",
    "Repairs done by anti-entropy since the queue began, by kind (copied, deleted, restored, failed)",
    ["shard", "kind"],
  );
  const refill = gauge(
    "backpack_server_refill_files_left",
    "Files a refilling server still lacks (0 when it is not refilling)",
    ["shard", "server"],
  );
  const scrub = gauge(
    "backpack_server_scrub_pass_ratio",
    "How far the server's scrub pass under way is (0-1; 1 between passes)",
    ["shard", "server"],
  );
  const down = gauge(
    "backpack_server_down",
    "1 when the last comparison could not reach the server (or refused to merge it), else 0",
    ["shard", "server"],
  );
  async function fill(): Promise<void> {
    const health = await queue.health();
    for (const g of [under, compared, repairs, refill, scrub, down]) g.reset();
    for (const h of health ?? []) {
      const shard = h.shard;
      under.set({ shard }, h.underReplicated);
      if (h.lastComparison) compared.set({ shard }, h.lastComparison.finishedAt / 1000);
      for (const kind of ["copied", "deleted", "restored", "failed"] as const)
        repairs.set({ shard, kind }, h.repairs[kind]);
      for (const [server, n] of Object.entries(h.nodes)) {
        refill.set({ shard, server }, n.refill ? Math.max(0, n.refill.missing - n.refill.done) : 0);
        const cur = n.scrub?.current;
        if (n.scrub)
          scrub.set({ shard, server }, cur && cur.totalBytes > 0 ? cur.doneBytes / cur.totalBytes : 1);
        down.set({ shard, server }, n.state === "down" ? 1 : 0);
      }
    }
  }
}
