import { BackpackError } from "../common/errors.js";
import { formatChecksum } from "../common/checksum.js";
import { formatVersion } from "../common/version.js";
import type { ClusterSnapshot, ShardInfo } from "../cluster/types.js";
import type { ReplicationTask } from "../queue/types.js";
import type { BodyReader, BodySource } from "./body-source.js";
import type { CoordinatorContext } from "./context.js";
import type { StoredUpload } from "./store-replicas.js";

export interface ReplicationOutcome {
  /** Servers that hold the file now. */
  holding: string[];
  /** Servers with a durably queued copy task. */
  queued: string[];
  /** Servers that neither hold the file nor have a task. */
  missing: string[];
}

/**
 * Hinted handoff: one `copy` task (with the upload's version, CRC-32 and size, the servers holding it as
 * sources) for every server of the shard that does not hold the upload, pushed to the queue in one call. The
 * replicators make the copies once those servers are back; a server that holds a newer version by then refuses
 * its copy, which counts as done. Servers whose task the queue could not take are `missing`.
 */
export async function handOff(
  ctx: CoordinatorContext,
  shard: ShardInfo,
  key: string,
  stored: StoredUpload,
  size: number,
): Promise<ReplicationOutcome> {
  const outcome: ReplicationOutcome = { holding: [...stored.holding], queued: [], missing: [] };
  const others = shard.servers.filter((s) => !stored.holding.includes(s));
  if (others.length === 0 || stored.holding.length === 0) return outcome;
  try {
    await ctx.queue.push(others.map((target) => copyTask(ctx, shard, key, stored, size, target)));
    outcome.queued.push(...others);
    for (const s of others) ctx.metrics.handoffs.inc({ reason: stored.missed.get(s) ?? "failed" });
  } catch (err) {
    outcome.missing.push(...others);
    ctx.log.warn(
      { key, shard: shard.id, servers: others, err: (err as Error).message },
      "could not hand off copies: the replication queue is unavailable",
    );
  }
  return outcome;
}

/**
 * The original's way (`X-Backpack-Replicas: one`): one `copy` task per other server of the shard, pushed to the
 * queue in one call. When the queue cannot take them, the coordinator copies from a server that holds the
 * upload to the others itself; copies that fail then go to the queue if it is usable.
 */
export async function replicate(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  shard: ShardInfo,
  key: string,
  stored: StoredUpload,
  body: BodySource,
): Promise<ReplicationOutcome> {
  const others = shard.servers.filter((s) => !stored.holding.includes(s));
  const outcome: ReplicationOutcome = { holding: [...stored.holding], queued: [], missing: [] };
  if (others.length === 0) return outcome;
  const taskFor = (target: string): ReplicationTask => copyTask(ctx, shard, key, stored, body.size, target);
  if (ctx.queue.usable) {
    try {
      await ctx.queue.push(others.map(taskFor));
      outcome.queued.push(...others);
      return outcome;
    } catch (err) {
      ctx.log.warn(
        { err: (err as Error).message, key },
        "queue unavailable: copying to the replicas directly",
      );
    }
  }
  const results = await Promise.all(
    others.map(async (target) => ({
      target,
      ok: await directCopy(ctx, snapshot, key, stored, body, target),
    })),
  );
  let toQueue: string[] = [];
  for (const r of results) (r.ok ? outcome.holding : toQueue).push(r.target);
  if (toQueue.length > 0 && ctx.queue.usable) {
    try {
      await ctx.queue.push(toQueue.map(taskFor));
      outcome.queued.push(...toQueue);
      toQueue = [];
    } catch {
      // Reported as missing below.
    }
  }
  outcome.missing.push(...toQueue);
  return outcome;
}

function copyTask(
  ctx: CoordinatorContext,
  shard: ShardInfo,
  key: string,
  stored: StoredUpload,
  size: number,
  target: string,
): ReplicationTask {
  return {
    op: "copy",
    shard: shard.id,
    sources: stored.holding,
    target,
    key,
    crc: formatChecksum(stored.crc),
    size,
    createdAt: ctx.now(),
    version: formatVersion(stored.version),
  };
}

/** Copies the upload to `target`: replays the body when it is held, else streams it from a server holding it. */
async function directCopy(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  key: string,
  stored: StoredUpload,
  body: BodySource,
  target: string,
): Promise<boolean> {
  const base = snapshot.servers[target]?.url;
  const source = snapshot.servers[stored.holding[0] ?? ""]?.url;
  if (base === undefined || source === undefined) return false;
  let reader: BodyReader | undefined;
  try {
    const options = {
      size: body.size,
      expectedCrc: stored.crc,
      version: stored.version,
      ...(stored.contentType ? { contentType: stored.contentType } : {}),
      ...(stored.headers ? { headers: stored.headers } : {}),
    };
    const held = body.replayable && body.complete ? (body.buffer() ?? (reader = body.open())) : undefined;
    if (held !== undefined) {
      await ctx.nodes.copy(base, key, held, options);
    } else {
      const res = await ctx.nodes.get(source, key);
      if (res.statusCode !== 200) {
        await res.body.dump();
        throw new BackpackError(
          "UPSTREAM_FAILED",
          `${source} answered ${res.statusCode} when read for a copy`,
        );
      }
      await ctx.nodes.copy(base, key, res.body, options);
    }
    ctx.health.recordSuccess(target);
    ctx.metrics.directCopies.inc({ result: "ok" });
    return true;
  } catch (err) {
    ctx.health.recordFailure(target);
    ctx.metrics.directCopies.inc({ result: "failed" });
    ctx.log.warn({ server: target, key, err: (err as Error).message }, "direct copy failed");
    return false;
  } finally {
    reader?.close();
  }
}
