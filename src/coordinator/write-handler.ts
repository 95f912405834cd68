import type { IncomingMessage, ServerResponse } from "node:http";
import { BackpackError, hasCode, toBackpackError } from "../common/errors.js";
import { expectedChecksum } from "../common/checksum.js";
import { checkBearer, sendJson } from "../common/http.js";
import { formatVersion, VERSION_HEADER } from "../common/version.js";
import { keyFromTarget } from "../common/key.js";
import { pickStoredHeaders } from "../common/stored-headers.js";
import { SHARD_HEADER } from "../client/coordinator-client.js";
import type { ClusterSnapshot, ShardInfo } from "../cluster/types.js";
import { BodySource } from "./body-source.js";
import type { CoordinatorContext } from "./context.js";
import { REPLICA_MODES, type ReplicaMode } from "./config.js";
import { handOff, replicate, type ReplicationOutcome } from "./replicas.js";
import { refusedByNode, storeReplicas, type StoredUpload } from "./store-replicas.js";
import { chooseShard, type ShardCandidate } from "./shard-chooser.js";

/**
 * `PUT /<key>` → 200 `{"shard_id":"<id>"}`. What a 200 means depends on the replica mode (`X-Backpack-Replicas`
 * or the query option `?replicas=`, never part of the key; the coordinator's `replicas` by default):
 * - `live`: every node of the shard that is not down holds the file durably (at least the write quorum), and
 *   every other one has a durably queued copy task (hinted handoff), named in `X-Backpack-Queued`;
 * - `all`: every node of the shard holds it;
 * - `one`: one node holds it and every other one holds it or has a durably queued copy task.
 *
 * The usage of the shard is reserved when the shard is chosen (so concurrent uploads cannot overflow it),
 * counted once the file is stored on some node (also when the answer is then a 503), and given back when it is
 * stored nowhere or the client aborts.
 */
export async function handleWrite(
  ctx: CoordinatorContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const started = performance.now();
  checkBearer(req, ctx.writeToken);
  const target = req.url ?? "/";
  const key = keyFromTarget(target);
  if (RESERVED_KEYS.has(key)) {
    throw new BackpackError(
      "METHOD_NOT_ALLOWED",
      `/${key} is reserved (GET and HEAD only); no file can be stored there`,
    );
  }
  const mode = replicaMode(req, target, ctx.config.replicas);
  // Checked end to end: the nodes refuse a body that does not match it, and so the upload.
  const declaredCrc = expectedChecksum(req.headers["x-backpack-checksum"]);
  const size = declaredSize(req, ctx.config.maxBodyBytes);
  const headers = pickStoredHeaders(req.headers);
  const snapshot = writableSnapshot(ctx);
  const targetId = targetShard(req);
  // Only the original's mode leaves new files as a single copy: it waits for the replicators to keep up.
  if (mode === "one" && (await ctx.queue.admit())) ctx.counters.throttledUploads++;
  // A declared size lets the shard be chosen before the body arrives; a chunked body is read first.
  if (size !== undefined) chooseFor(ctx, snapshot, size, targetId);

  let body: BodySource | undefined;
  let reservation: ReturnType<CoordinatorContext["usage"]["reserve"]> | undefined;
  try {
    body =
      size === undefined
        ? await BodySource.buffered(req, {
            retainBytes: ctx.config.retainBytes,
            maxBodyBytes: ctx.config.maxBodyBytes,
            tmpDir: ctx.config.tmpDir,
          })
        : BodySource.live(req, size, ctx.config.retainBytes);
    // A client too slow to send even the start of its body is cut here, before it holds a node's upload budget.
    await body.ready();
    const shard = chooseFor(ctx, snapshot, body.size, targetId);
    reservation = ctx.usage.reserve(shard.id, body.size);
    // Durable copies wanted: a shard with fewer nodes than the quorum needs them all.
    const need =
      mode === "one"
        ? 1
        : mode === "all"
          ? shard.servers.length
          : Math.min(ctx.config.writeQuorum, shard.servers.length);
    const stored = await storeReplicas(ctx, snapshot, shard, key, body, {
      mode,
      need,
      contentType: req.headers["content-type"],
      headers,
      declaredCrc,
    });
    if (stored.holding.length === 0) throw storedNowhere(key, stored);
    // Stored: counted, whatever the answer. It is not taken back from the nodes that hold it (see below).
    reservation.commit();
    const outcome =
      mode === "one"
        ? await replicate(ctx, snapshot, shard, key, stored, body)
        : await handOff(ctx, shard, key, stored, body.size);
    const short = mode === "live" && outcome.holding.length < need;
    if (short || outcome.missing.length > 0 || (mode === "all" && outcome.queued.length > 0)) {
      // Not as safe as asked. The copies made are not taken back: removing one would take a tombstone newer
      // than the upload, which would remove the version it replaced too, on every replica. They stay, and
      // reach the other nodes (queued copies, or repair: newest wins), as would a retry of the upload.
      throw notSafe(ctx, key, shard.id, outcome, short ? need : undefined);
    }
    ctx.acked.note(`${shard.id}:${key}`, stored.version, false);
    ctx.counters.processedUploads++;
    ctx.counters.processedBytes += body.size;
    ctx.metrics.uploads.inc({ result: "ok" });
    ctx.metrics.uploadBytes.inc(body.size);
    ctx.metrics.uploadSeconds.observe((performance.now() - started) / 1000);
    res.setHeader(VERSION_HEADER, formatVersion(stored.version));
    if (outcome.queued.length > 0) res.setHeader(QUEUED_HEADER, outcome.queued.join(","));
    sendJson(
      res,
      200,
      mode === "all" ? { shard_id: shard.id, replicas: outcome.holding } : { shard_id: shard.id },
    );
  } catch (err) {
    reservation?.release();
    const e = toBackpackError(err);
    const aborted = hasCode(e, "CLIENT_ABORTED") || body?.failure !== undefined;
    ctx.counters.failedUploads++;
    if (aborted) ctx.counters.abortedUploads++;
    ctx.metrics.uploads.inc({ result: aborted ? "aborted" : "failed" });
    throw aborted ? (body?.failure ?? e) : e;
  } finally {
    await body?.dispose();
  }
}

/** Names the servers that get an upload (or a delete) from the replication queue. */
export const QUEUED_HEADER = "x-backpack-queued";

/** No node took the upload: 502 when they refused the request itself, else 503 (retry). */
function storedNowhere(key: string, stored: StoredUpload): BackpackError {
  const last = stored.lastError;
  const tried = [...stored.missed].filter(([, why]) => why !== "skipped").map(([s]) => s);
  if (last && refusedByNode(last)) {
    return new BackpackError("UPSTREAM_FAILED", `a node refused the upload: ${last?.message ?? ""}`, {
      cause: last,
      details: { node_code: last?.code },
    });
  }
  return new BackpackError(
    "UNAVAILABLE",
    `Could not upload file /${key} to any node: ${tried.join(",") || "(none reachable)"}`,
    { cause: last, retryAfterSec: 1, details: last ? { last_error: last.message } : {} },
  );
}

/** Stored, but on fewer nodes than asked (`need`), or neither copied nor queued for some: 503. */
function notSafe(
  ctx: CoordinatorContext,
  key: string,
  shardId: string,
  outcome: ReplicationOutcome,
  need: number | undefined,
): BackpackError {
  const { holding, queued, missing } = outcome;
  ctx.log.warn(
    { key, shard: shardId, holding, queued, missing, need },
    "upload stored on fewer nodes than asked",
  );
  const why =
    need !== undefined
      ? `stored on ${holding.length} of the ${need} nodes the write quorum needs`
      : missing.length > 0
        ? `neither copied nor queued for server ${missing.join(",")} (the replication queue and those nodes are unavailable)`
        : `not every server of shard ${shardId} holds the file yet`;
  return new BackpackError(
    "UNAVAILABLE",
    `could not store /${key} as asked: ${why}; stored on server ${holding.join(",")}` +
      (queued.length > 0 ? `, copies queued for ${queued.join(",")}` : ""),
    {
      retryAfterSec: 1,
      details: {
        shard_id: shardId,
        holding,
        ...(queued.length > 0 ? { queued } : {}),
        ...(missing.length > 0 ? { missing } : {}),
      },
    },
  );
}

/** The storage nodes' own paths (and the coordinator's): no file can be stored under these exact keys. */
const RESERVED_KEYS = new Set(["stats", "metrics", "healthz", "cluster", "ring"]);

/** The replica mode an upload asks for (`X-Backpack-Replicas`, else `?replicas=`), else `fallback`. */
export function replicaMode(req: IncomingMessage, target: string, fallback: ReplicaMode): ReplicaMode {
  const header = req.headers["x-backpack-replicas"];
  let asked = typeof header === "string" ? header.trim().toLowerCase() : undefined;
  const q = target.indexOf("?");
  if (asked === undefined && q !== -1)
    asked = new URLSearchParams(target.slice(q + 1)).get("replicas") ?? undefined;
  if (asked === undefined) return fallback;
  if ((REPLICA_MODES as readonly string[]).includes(asked)) return asked as ReplicaMode;
  throw new BackpackError(
    "BAD_REQUEST",
    `X-Backpack-Replicas (or ?replicas=) must be one of ${REPLICA_MODES.join(", ")}, not ${JSON.stringify(asked)}`,
  );
}

/** The declared body size, or undefined for a chunked body; refuses oversized and malformed lengths. */
export function declaredSize(req: IncomingMessage, maxBodyBytes: number): number | undefined {
  const header = req.headers["content-length"];
  if (header === undefined) {
    if (req.headers["transfer-encoding"] === undefined) return 0;
    return undefined;
  }
  if (!/^\d+$/.test(header)) throw new BackpackError("BAD_REQUEST", "Content-Length is not a whole number");
  const size = Number(header);
  if (!Number.isSafeInteger(size)) throw new BackpackError("BAD_REQUEST", "Content-Length is out of range");
  if (size > maxBodyBytes) {
    throw new BackpackError("BODY_TOO_LARGE", `body is larger than ${maxBodyBytes} bytes`, {
      details: { max_body_bytes: maxBodyBytes },
    });
  }
  return size;
}

function writableSnapshot(ctx: CoordinatorContext): ClusterSnapshot {
  const snapshot = ctx.map.snapshot();
  if (!snapshot.initialized) {
    throw new BackpackError(
      "NOT_INITIALIZED",
      "the cluster map is not initialised: run backpack-coordinator-init <zk> <root> <queue key> <redis>",
      { retryAfterSec: 5 },
    );
  }
  return snapshot;
}

/** `X-Backpack-Shard`: the shard a targeted upload must go to, or undefined (the coordinator chooses). */
function targetShard(req: IncomingMessage): string | undefined {
  const v = req.headers[SHARD_HEADER];
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v.trim() === "") {
    throw new BackpackError("BAD_REQUEST", "X-Backpack-Shard must name one shard id");
  }
  return v.trim();
}

function chooseFor(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  size: number,
  targetId: string | undefined,
): ShardInfo {
  const candidates: ShardCandidate[] = Object.values(snapshot.shards).map((shard) => ({
    shard,
    free: shard.capacity - shard.used - ctx.usage.outstanding(shard.id),
  }));
  if (targetId === undefined) return chooseShard(candidates, size, ctx.random);
  const target = candidates.find((c) => c.shard.id === targetId);
  if (target === undefined)
    throw new BackpackError("NO_SUCH_SHARD", `no shard ${targetId} in the cluster map`);
  // The same rules as a chosen shard: enabled, with servers, and room for the body.
  const why = !target.shard.enabled
    ? "is disabled (read-only)"
    : target.shard.servers.length === 0
      ? "has no servers"
      : target.free < size || target.free <= 0
        ? `has no room for ${size} bytes (${Math.max(0, target.free)} bytes free)`
        : undefined;
  if (why !== undefined) {
    throw new BackpackError("SHARD_UNAVAILABLE", `shard ${targetId} ${why}`, {
      details: { shard_id: targetId },
    });
  }
  return target.shard;
}
