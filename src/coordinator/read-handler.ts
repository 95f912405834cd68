import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import { BackpackError, toBackpackError } from "../common/errors.js";
import { shardKeyFromTarget } from "../common/key.js";
import { isStoredHeader } from "../common/stored-headers.js";
import type { ClusterSnapshot } from "../cluster/types.js";
import { compareVersions, parseVersion, VERSION_HEADER, type Version } from "../common/version.js";
import type { CoordinatorContext } from "./context.js";
import { orderServers } from "./shard-chooser.js";

/** Bodies up to this size are read whole before answering (see below); larger ones are streamed through. */
const SMALL_BODY_BYTES = 64 * 1024;

/** Request headers passed to the node: ranges and conditions work end to end. */
const FORWARD_REQUEST = [
  "range",
  "if-range",
  "if-match",
  "if-none-match",
  "if-modified-since",
  "if-unmodified-since",
];

/** Response headers passed back to the client. */
export const FORWARD_RESPONSE = [
  "content-length",
  "content-type",
  "content-range",
  "accept-ranges",
  "etag",
  "last-modified",
  "x-backpack-checksum",
  "x-backpack-version",
];

/**
 * `GET`/`HEAD /<shard>:<key>`: asks the shard's servers in turn, healthy ones first, and answers from the first
 * that has the file. A 404, a 5xx (502 CHECKSUM_MISMATCH for a corrupt copy included), a refused connection or
 * a timeout moves on to the next server; 2xx, 304, 412 and 416 are answers. The body is streamed through.
 * 404 only when every server said it does not have the file; when some could not be asked, 503 (the file may
 * be on one of them). A file just written is readable at once: its first server holds it before the 200.
 *
 * Reads never go back in time from what this coordinator acknowledged: a server answering with an older version
 * than the last write or delete the coordinator answered for this address (a copy or a delete not applied
 * there yet) is passed over like a failed one; when no server has that version, the answer is 404 after a
 * delete and 503 after a write, never the old bytes.
 */
export async function handleRead(
  ctx: CoordinatorContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const { shardId, key } = shardKeyFromTarget(req.url ?? "/");
  const snapshot = ctx.map.snapshot();
  const shard = Object.hasOwn(snapshot.shards, shardId) ? snapshot.shards[shardId] : undefined;
  if (shard === undefined) {
    ctx.metrics.reads.inc({ result: "not_found" });
    throw new BackpackError("NOT_FOUND", `no shard ${shardId}`);
  }
  const method = req.method === "HEAD" ? "HEAD" : "GET";
  const headers: Record<string, string> = {};
  for (const name of FORWARD_REQUEST) {
    const v = req.headers[name];
    if (typeof v === "string") headers[name] = v;
  }
  let notFound = 0;
  const failures: string[] = [];
  const acked = ctx.acked.get(`${shardId}:${key}`);
  let behind = 0;
  /** Servers that remember a delete at least as new as the acknowledged version. */
  let deletedSince = 0;
  const order = orderServers(shard.servers, (s) => ctx.health.isSuspect(s), ctx.random);
  for (const [i, serverId] of order.entries()) {
    if (i > 0) ctx.metrics.readFailovers.inc();
    const base = serverBase(snapshot, serverId);
    if (base === undefined) {
      failures.push(`${serverId}: not in the servers map`);
      continue;
    }
    let upstream;
    try {
      upstream = await ctx.nodes.read(base, key, {
        method,
        headers,
        timeoutMs: ctx.config.nodeTimeoutMs,
        bufferBytes: SMALL_BODY_BYTES,
      });
    } catch (err) {
      // Small bodies come whole, so a transfer that breaks (a node dying, a checksum error found mid-body)
      // still fails over to the next node instead of cutting the answer.
      ctx.health.recordFailure(serverId);
      failures.push(`${serverId}: ${toBackpackError(err).message}`);
      continue;
    }
    const status = upstream.status;
    if (acked && status < 500) {
      const older = olderThan(upstream.headers[VERSION_HEADER], acked.version);
      if (older && status !== 404) {
        upstream.stream?.destroy();
        behind++;
        ctx.health.recordSuccess(serverId);
        continue;
      }
      if (!older && status === 404) deletedSince++;
    }
    if (status === 404 || status >= 500) {
      upstream.stream?.destroy();
      if (status === 404) {
        notFound++;
        ctx.health.recordSuccess(serverId);
      } else {
        ctx.health.recordFailure(serverId);
        failures.push(`${serverId}: answered ${status}`);
      }
      continue;
    }
    const out: Record<string, string> = {};
    for (const name of FORWARD_RESPONSE) {
      const v = upstream.headers[name];
      if (v !== undefined) out[name] = v;
    }
    // The file's stored headers, as the node answers them.
    for (const [name, v] of Object.entries(upstream.headers)) if (isStoredHeader(name)) out[name] = v;
    ctx.health.recordSuccess(serverId);
    ctx.metrics.reads.inc({ result: "ok" });
    ctx.counters.reads++;
    ctx.counters.readBytes += Number(out["content-length"] ?? 0) || 0;
    res.writeHead(status, out);
    const stream = upstream.stream;
    if (stream === undefined) {
      res.end(upstream.body); // empty for HEAD and 304
      return;
    }
    // Headers are sent: a failure from here on can only cut the transfer (the client sees a short body).
    await pipeline(stream, res).catch((err: unknown) => {
      ctx.log.warn({ server: serverId, key, err: (err as Error).message }, "read cut short");
      res.destroy();
    });
    return;
  }
  const gone = acked === undefined ? failures.length === 0 : acked.deleted || deletedSince > 0;
  if (gone) {
    ctx.metrics.reads.inc({ result: "not_found" });
    throw new BackpackError("NOT_FOUND", `${shardId}:${key} not found`);
  }
  if (acked) {
    ctx.metrics.reads.inc({ result: "failed" });
    throw new BackpackError(
      "UNAVAILABLE",
      `${shardId}:${key}: no server holds the version this coordinator acknowledged yet ` +
        `(${behind} older, ${notFound} without it${failures.length > 0 ? `, ${failures.join("; ")}` : ""})`,
      { retryAfterSec: 1 },
    );
  }
  ctx.metrics.reads.inc({ result: "failed" });
  throw new BackpackError(
    "UNAVAILABLE",
    `${shardId}:${key} could not be read: ${notFound} server(s) do not have it, ${failures.join("; ")}`,
    { retryAfterSec: 1 },
  );
}

/** True when a server's answer is older than `version` (an answer without a version predates versions). */
function olderThan(text: string | undefined, version: Version): boolean {
  const served = parseVersion(text);
  return served === undefined || compareVersions(served, version) < 0;
}

export function serverBase(snapshot: ClusterSnapshot, serverId: string): string | undefined {
  return snapshot.servers[serverId]?.url;
}
