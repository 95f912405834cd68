import type { IncomingMessage, ServerResponse } from "node:http";
import { BackpackError, toBackpackError } from "../common/errors.js";
import { checkBearer } from "../common/http.js";
import { keyFromTarget, parseShardKey } from "../common/key.js";
import type { ReplicationTask } from "../queue/types.js";
import type { CoordinatorContext } from "./context.js";

/**
 * `DELETE /<shard>:<key>` removes the file from every server of the shard: now where the server answers, and
 * by a queued `delete` task where it does not (so a server that was down does not keep the file and hand it
 * back through replication). 204 when it is gone everywhere, or gone where asked and queued elsewhere
 * (`X-Backpack-Queued: <server ids>`), 404 when no server had it, 503 when a
 * server could neither be asked nor given a task. The freed bytes are taken off the shard's usage.
 */
export async function handleDelete(
  ctx: CoordinatorContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  checkBearer(req, ctx.writeToken);
  const { shardId, key } = parseShardKey(keyFromTarget(req.url ?? "/"));
  const snapshot = ctx.map.snapshot();
  const shard = snapshot.shards[shardId];
  if (shard === undefined) throw new BackpackError("NOT_FOUND", `no shard ${shardId}`);

  // The size is needed for usage: the first server that has the file tells it.
  let size: number | undefined;
  const results = await Promise.all(
    shard.servers.map(async (serverId) => {
      const base = snapshot.servers[serverId]?.url;
      if (base === undefined) return { serverId, state: "unreachable" as const };
      try {
        const meta = await ctx.nodes.head(base, key);
        if (meta === undefined) return { serverId, state: "absent" as const };
        size ??= meta.size;
        const deleted = await ctx.nodes.delete(base, key);
        ctx.health.recordSuccess(serverId);
        return { serverId, state: deleted ? ("deleted" as const) : ("absent" as const) };
      } catch (err) {
        ctx.health.recordFailure(serverId);
        ctx.log.warn({ server: serverId, key, err: toBackpackError(err).message }, "delete on a node failed");
        return { serverId, state: "unreachable" as const };
      }
    }),
  );
  const deleted = results.filter((r) => r.state === "deleted").map((r) => r.serverId);
  const unreachable = results.filter((r) => r.state === "unreachable").map((r) => r.serverId);
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
    }));
    try {
      await ctx.queue.push(tasks);
    } catch (err) {
      ctx.metrics.deletes.inc({ result: "failed" });
      throw new BackpackError(
        "UNAVAILABLE",
        `${shardId}:${key} could not be deleted on server ${unreachable.join(",")} and the replication queue is unavailable` +
          (deleted.length > 0 ? ` (deleted on ${deleted.join(",")})` : ""),
        { cause: err, retryAfterSec: 1 },
      );
    }
  }
  if (deleted.length === 0 && unreachable.length === 0) {
    ctx.metrics.deletes.inc({ result: "not_found" });
    throw new BackpackError("NOT_FOUND", `${shardId}:${key} not found`);
  }
  if (size !== undefined) ctx.usage.remove(shardId, size);
  ctx.metrics.deletes.inc({ result: unreachable.length > 0 ? "queued" : "deleted" });
  // 204 also when some servers get a queued task: like an upload's 200, it means "will be gone everywhere".
  res.writeHead(204, unreachable.length > 0 ? { "x-backpack-queued": unreachable.join(",") } : {});
  res.end();
}
