import type { ServerResponse } from "node:http";
import { sendJson } from "../common/http.js";
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
  const queue = await ctx.queue.stats();
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
