import type { IncomingMessage, ServerResponse } from "node:http";
import { BackpackError, toBackpackError } from "../common/errors.js";
import { checkBearer } from "../common/http.js";
import { shardKeyFromTarget } from "../common/key.js";
import type { ClusterSnapshot } from "../cluster/types.js";
import { formatVersion, VERSION_HEADER, type Version } from "../common/version.js";
import type { ReplicationTask } from "../queue/types.js";
import type { CoordinatorContext } from "./context.js";

/** Times the nodes may answer that they hold a newer version before the delete gives up. */
const STALE_RETRIES = 3;

type NodeOutcome =
  | { serverId: string; state: "deleted"; size: number | undefined }
  | { serverId: string; state: "absent" | "same" | "unreachable" }
  | { serverId: string; state: "newer"; current: Version | undefined };

/**
 * `DELETE /<shard>:<key>` removes the file from every server of the shard with a versioned tombstone: written
 * where the server answers (also on one that does not hold the file yet, so that a copy still queued cannot
 * bring it back), and by a queued `delete` task of the same version where it does not. 204 when it is gone
 * everywhere, or gone where asked and queued elsewhere (`X-Backpack-Queued: <server ids>`), 404 when no server
 * had it, 503 when a server could neither be asked nor given a task. The freed bytes are taken off the shard's
 * usage. A server holding a newer version than the delete's stamp (a coordinator whose clock is ahead wrote
 * it) moves the clock past it, and the delete is stamped again: a delete made after a write always wins.
 */
export async function handleDelete(
  ctx: CoordinatorContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  checkBearer(req, ctx.writeToken);
  const { shardId, key } = shardKeyFromTarget(req.url ?? "/");
  const snapshot = ctx.map.snapshot();
  const shard = Object.hasOwn(snapshot.shards, shardId) ? snapshot.shards[shardId] : undefined;
  if (shard === undefined) throw new BackpackError("NOT_FOUND", `no shard ${shardId}`);

  let version = ctx.clock.next();
  let results: NodeOutcome[] = [];
  let attempts = 0;
  // A server that removed the file in an earlier attempt answers 404 to the next one (its tombstone is there
  // now): what each attempt deleted is kept, or a delete retried past a newer version would answer 404.
  const deleted: Extract<NodeOutcome, { state: "deleted" }>[] = [];
  for (;;) {
    attempts++;
    results = await Promise.all(
      shard.servers.map((serverId) => deleteOn(ctx, snapshot, serverId, key, version)),
    );
    for (const r of results) if (r.state === "deleted") deleted.push(r);
    const newer = results.filter((r) => r.state === "newer");
    if (newer.length === 0) break;
    if (attempts > STALE_RETRIES) {
      ctx.metrics.deletes.inc({ result: "failed" });
      throw new BackpackError("UNAVAILABLE", `${shardId}:${key} is being written at the same time; retry`, {
        retryAfterSec: 1,
      });
    }
    for (const r of newer) if (r.current) ctx.clock.observe(r.current);
    version = ctx.clock.next();
  }
  const unreachable = results.filter((r) => r.state === "unreachable").map((r) => r.serverId);
  const size = deleted.find((r) => r.size !== undefined)?.size;
  if (unreachable.length > 0) {
    const tasks: ReplicationTask[] = unreachable.map((target) => ({
      op: "delete",
      shard: shardId,
      sources: [],
      target,
      key,
      crc: "00000000",
      size: size ?? 0,
      createdAt: ctx.now(),
      version: formatVersion(version),
    }));
    try {
      await ctx.queue.push(tasks);
    } catch (err) {
      ctx.metrics.deletes.inc({ result: "failed" });
      const done = deleted.map((r) => r.serverId);
      throw new BackpackError(
        "UNAVAILABLE",
        `${shardId}:${key} could not be deleted on server ${unreachable.join(",")} and the replication queue is unavailable` +
          (done.length > 0 ? ` (deleted on ${done.join(",")})` : ""),
        { cause: err, retryAfterSec: 1 },
      );
    }
  }
  // The tombstones stand either way: even a 404 leaves the address deleted at this version.
  ctx.acked.note(`${shardId}:${key}`, version, true);
  if (deleted.length === 0 && unreachable.length === 0) {
    ctx.metrics.deletes.inc({ result: "not_found" });
    // What each server answered (the last time, and how many times it was asked) goes along.
    const servers = Object.fromEntries(results.map((r) => [r.serverId, r.state]));
    throw new BackpackError("NOT_FOUND", `${shardId}:${key} not found`, { details: { servers, attempts } });
  }
  if (size !== undefined) ctx.usage.remove(shardId, size);
  ctx.metrics.deletes.inc({ result: unreachable.length > 0 ? "queued" : "deleted" });
  // 204 also when some servers get a queued task: like an upload's 200, it means "will be gone everywhere".
  res.writeHead(204, {
    [VERSION_HEADER]: formatVersion(version),
    ...(unreachable.length > 0 ? { "x-backpack-queued": unreachable.join(",") } : {}),
  });
  res.end();
}

async function deleteOn(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  serverId: string,
  key: string,
  version: Version,
): Promise<NodeOutcome> {
  const base = snapshot.servers[serverId]?.url;
  if (base === undefined) return { serverId, state: "unreachable" };
  try {
    const done = await ctx.nodes.deleteVersion(base, key, { version });
    ctx.health.recordSuccess(serverId);
    return { serverId, ...done };
  } catch (err) {
    ctx.health.recordFailure(serverId);
    ctx.log.warn({ server: serverId, key, err: toBackpackError(err).message }, "delete on a node failed");
    return { serverId, state: "unreachable" };
  }
}
