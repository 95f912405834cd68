import type { IncomingMessage, ServerResponse } from "node:http";
import { BackpackError, hasCode, toBackpackError } from "../common/errors.js";
import { expectedChecksum } from "../common/checksum.js";
import { checkBearer, sendJson } from "../common/http.js";
import { formatVersion, VERSION_HEADER } from "../common/version.js";
import { keyFromTarget } from "../common/key.js";
import type { ClusterSnapshot } from "../cluster/types.js";
import { BodySource } from "./body-source.js";
import type { CoordinatorContext } from "./context.js";
import { replicate, storeFirstReplica } from "./replicas.js";
import { chooseShard, type ShardCandidate } from "./shard-chooser.js";

/**
 * `PUT /<key>` → 200 `{"shard_id":"<id>"}`. A 200 means: one server of the shard holds the file durably and
 * every other one holds it or has a durably queued copy task. With `X-Backpack-Replicas: all` (or the query
 * option `?replicas=all`, never part of the key) it means every server of the shard holds it.
 *
 * The usage of the shard is reserved when the shard is chosen (so concurrent uploads cannot overflow it),
 * counted once when the answer is 200, and given back on any failure or client abort.
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
  const all = wantsAllReplicas(req, target);
  // Checked end to end: the first node refuses a body that does not match it, and so the upload.
  const declaredCrc = expectedChecksum(req.headers["x-backpack-checksum"]);
  const size = declaredSize(req, ctx.config.maxBodyBytes);
  const snapshot = writableSnapshot(ctx);
  if (await ctx.queue.admit()) ctx.counters.throttledUploads++;
  // A declared size lets the shard be chosen before the body arrives; a chunked body is read first.
  if (size !== undefined) chooseFor(ctx, snapshot, size);

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
    const shard = chooseFor(ctx, snapshot, body.size);
    reservation = ctx.usage.reserve(shard.id, body.size);
    const contentType = req.headers["content-type"];
    const stored = await storeFirstReplica(ctx, snapshot, shard, key, body, contentType, declaredCrc);
    const outcome = await replicate(ctx, snapshot, shard, key, stored, body, all);
    if (outcome.missing.length > 0) {
      // Neither copied nor queued: the upload is not safe, and the client is told so. It is not taken back: the
      // version it replaced on the holding node is gone there already, and a delete would take that one too.
      // The holding node keeps the newest version, which a retry of the upload or repair brings to the others.
      reservation.commit();
      ctx.log.warn(
        { key, shard: shard.id, holding: outcome.holding, missing: outcome.missing },
        "upload held by fewer nodes than its shard has, and no copy could be queued",
      );
      throw new BackpackError(
        "UNAVAILABLE",
        `could not store /${key} safely: stored on server ${outcome.holding.join(",")}, neither copied nor ` +
          `queued for server ${outcome.missing.join(",")} (the replication queue and those nodes are unavailable)`,
        {
          retryAfterSec: 1,
          details: { shard_id: shard.id, holding: outcome.holding, missing: outcome.missing },
        },
      );
    }
    if (all && outcome.queued.length > 0) {
      // Stored, and the remaining copies are durably queued: count it, but the receipt asked for cannot be given.
      reservation.commit();
      throw new BackpackError(
        "UNAVAILABLE",
        `not every server of shard ${shard.id} holds the file yet: stored on ${outcome.holding.join(",")}, ` +
          `copies queued for ${outcome.queued.join(",")}`,
        {
          retryAfterSec: 1,
          details: { shard_id: shard.id, holding: outcome.holding, queued: outcome.queued },
        },
      );
    }
    reservation.commit();
    ctx.acked.note(`${shard.id}:${key}`, stored.version, false);
    ctx.counters.processedUploads++;
    ctx.counters.processedBytes += body.size;
    ctx.metrics.uploads.inc({ result: "ok" });
    ctx.metrics.uploadBytes.inc(body.size);
    ctx.metrics.uploadSeconds.observe((performance.now() - started) / 1000);
    res.setHeader(VERSION_HEADER, formatVersion(stored.version));
    sendJson(res, 200, all ? { shard_id: shard.id, replicas: outcome.holding } : { shard_id: shard.id });
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

/** The storage nodes' own paths (and the coordinator's): no file can be stored under these exact keys. */
const RESERVED_KEYS = new Set(["stats", "metrics", "healthz", "cluster", "ring"]);

/** `X-Backpack-Replicas: all` or `?replicas=all`. */
export function wantsAllReplicas(req: IncomingMessage, target: string): boolean {
  const header = req.headers["x-backpack-replicas"];
  if (typeof header === "string" && header.trim().toLowerCase() === "all") return true;
  const q = target.indexOf("?");
  if (q === -1) return false;
  return new URLSearchParams(target.slice(q + 1)).get("replicas") === "all";
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

function chooseFor(ctx: CoordinatorContext, snapshot: ClusterSnapshot, size: number) {
  const candidates: ShardCandidate[] = Object.values(snapshot.shards).map((shard) => ({
    shard,
    free: shard.capacity - shard.used - ctx.usage.outstanding(shard.id),
  }));
  return chooseShard(candidates, size, ctx.random);
}
