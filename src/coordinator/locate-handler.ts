import type { ServerResponse } from "node:http";
import { formatChecksum } from "../common/checksum.js";
import { BackpackError, toBackpackError } from "../common/errors.js";
import { sendJson } from "../common/http.js";
import { shardKeyFromTarget } from "../common/key.js";
import { compareVersions, formatVersion } from "../common/version.js";
import type { NodeObject } from "../client/node-answers.js";
import type { FileLocation, NodeHolding } from "../client/coordinator-client.js";
import type { CoordinatorContext } from "./context.js";

export const LOCATE_PREFIX = "/locate/";

/**
 * `GET /locate/<shard>:<key>`: where a file is, asked now, never guessed. Each server of the shard is asked
 * for the file (HEAD); the newest version any holds is the file's. For every server: `holds` (that version),
 * `older`, or `missing`; `queued` lists the replication tasks for it (from the queue: a copy waiting, being
 * made, or held back while the server is down); `repair` says that the shard's comparison under way is copying
 * files to it. 404 when no server holds the file.
 */
export async function handleLocate(
  ctx: CoordinatorContext,
  res: ServerResponse,
  target: string,
): Promise<void> {
  sendJson(res, 200, await locate(ctx, target.slice(LOCATE_PREFIX.length - 1)));
}

export async function locate(ctx: CoordinatorContext, target: string): Promise<FileLocation> {
  const { shardId, key } = shardKeyFromTarget(target);
  const snapshot = ctx.map.snapshot();
  const shard = Object.hasOwn(snapshot.shards, shardId) ? snapshot.shards[shardId] : undefined;
  if (shard === undefined) throw new BackpackError("NOT_FOUND", `no shard ${shardId}`);
  const [heads, tasks, health] = await Promise.all([
    Promise.all(
      shard.servers.map(async (server) => {
        const url = snapshot.servers[server]?.url;
        if (url === undefined) return { server, url: "", error: "not in the servers map" };
        try {
          return { server, url, obj: await ctx.nodes.head(url, key) };
        } catch (err) {
          return { server, url, error: toBackpackError(err).message };
        }
      }),
    ),
    ctx.queue.find(shardId, key),
    ctx.queue.health(),
  ]);
  let newest: NodeObject | undefined;
  for (const h of heads) {
    const v = h.obj?.version;
    if (
      h.obj &&
      !h.obj.damaged &&
      (!newest || (v && newest.version && compareVersions(v, newest.version) > 0))
    )
      newest = h.obj;
  }
  if (!newest) throw new BackpackError("NOT_FOUND", `${shardId}:${key} not found`);
  const shardHealth = health?.find((h) => h.shard === shardId);
  const running = shardHealth?.running;
  const refilling = shardHealth?.nodes ?? {};
  const nodes: NodeHolding[] = heads.map((h) => {
    const queued = (tasks ?? [])
      .filter((t) => t.task.target === h.server)
      .map((t) => ({
        op: t.task.op,
        version: t.task.version ?? null,
        state: t.state,
        attempts: t.attempts,
        ...(t.dueAt > 0 ? { dueAt: t.dueAt } : {}),
      }));
    const holds: NodeHolding["holds"] =
      h.error !== undefined
        ? "unreachable"
        : !h.obj
          ? "missing"
          : h.obj.damaged
            ? "damaged"
            : sameVersion(h.obj, newest)
              ? "holds"
              : "older";
    const n = refilling[h.server];
    return {
      server: h.server,
      url: h.url,
      holds,
      ...(h.obj?.version ? { version: formatVersion(h.obj.version) } : {}),
      ...(h.error !== undefined ? { reason: h.error } : {}),
      queued,
      repair: running !== null && running !== undefined && n?.state === "refilling",
    };
  });
  return {
    address: `${shardId}:${key}`,
    size: newest.size,
    checksum: formatChecksum(newest.crc),
    contentType: newest.contentType,
    lastModified: newest.lastModified,
    version: newest.version ? formatVersion(newest.version) : null,
    queueAnswered: tasks !== undefined,
    nodes,
  };
}

function sameVersion(a: NodeObject, b: NodeObject): boolean {
  if (a.version && b.version) return compareVersions(a.version, b.version) === 0;
  return a.crc === b.crc && a.size === b.size;
}
