import { BackpackError, hasCode, toBackpackError } from "../common/errors.js";
import { formatChecksum } from "../common/checksum.js";
import type { ClusterSnapshot, ShardInfo } from "../cluster/types.js";
import type { ReplicationTask } from "../queue/types.js";
import type { BodySource } from "./body-source.js";
import type { CoordinatorContext } from "./context.js";
import { orderServers } from "./shard-chooser.js";
import { staleCurrent } from "../client/node-client.js";
import { formatVersion, type Version } from "../common/version.js";

export interface StoredUpload {
  /** The server that holds the upload durably. */
  serverId: string;
  crc: number;
  /** The version it was stored with; every copy carries it. */
  version: Version;
  contentType: string | undefined;
}

/** Times one node may refuse an upload as older than what it holds before the upload fails. */
const STALE_RETRIES = 3;

/**
 * Writes the body to one server of the shard: healthy ones first, the next one when a server fails before
 * committing. The node answers 201 only once the bytes are durable, with the CRC it stored, which is checked
 * against the CRC of what the client sent. Throws CLIENT_ABORTED when the client goes away (the upstream
 * request is aborted with it, so no node indexes a partial record), and UNAVAILABLE when no server took it.
 *
 * The upload is stamped with a version from the coordinator's clock. A node that holds that version or a newer
 * one of the key (a write stamped by a coordinator whose clock is ahead) refuses it; the clock then moves past
 * the node's version and the upload is stamped again, so that a write made after another one always wins.
 */
export async function storeFirstReplica(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  shard: ShardInfo,
  key: string,
  body: BodySource,
  contentType: string | undefined,
  /** The CRC-32 the client declared (`X-Backpack-Checksum`), if it did. */
  declaredCrc?: number,
): Promise<StoredUpload> {
  const tried: string[] = [];
  const mismatch = (): BackpackError =>
    new BackpackError("CHECKSUM_MISMATCH", `the body of /${key} does not match its X-Backpack-Checksum`, {
      details: { declared: formatChecksum(declaredCrc ?? 0), received: formatChecksum(body.crc) },
    });
  let lastError: BackpackError | undefined;
  for (const serverId of orderServers(shard.servers, (s) => ctx.health.isSuspect(s), ctx.random)) {
    const base = snapshot.servers[serverId]?.url;
    if (base === undefined) continue;
    if (!body.replayable) break;
    tried.push(serverId);
    try {
      // Small bodies usually arrive in one piece: one buffer makes one write upstream.
      const small = body.size <= 64 * 1024;
      if (small) await body.whole();
      if (declaredCrc !== undefined && body.complete && body.crc !== declaredCrc) throw mismatch();
      const { crc, version } = await putNewest(ctx, base, key, body, small, contentType, declaredCrc);
      // The node answered after reading the whole body, so `body.crc` covers every byte by now.
      if (crc !== body.crc) {
        throw new BackpackError(
          "UPSTREAM_FAILED",
          `${base} stored checksum ${formatChecksum(crc)}, the client sent ${formatChecksum(body.crc)}`,
        );
      }
      ctx.health.recordSuccess(serverId);
      return { serverId, crc, version, contentType };
    } catch (err) {
      if (body.failure) throw body.failure;
      const e = toBackpackError(err);
      if (hasCode(e, "CLIENT_ABORTED")) throw e;
      // The client's body does not match what it declared: its fault, whichever node saw it.
      if (declaredCrc !== undefined && body.complete && body.crc !== declaredCrc) throw mismatch();
      if (hasCode(e, "REQUEST_TIMEOUT") && !body.complete) {
        // The node cut a client that sent its body too slowly: the client's doing, not the node's.
        throw new BackpackError("REQUEST_TIMEOUT", "the client sent the body too slowly", { cause: e });
      }
      if (hasCode(e, "STALE_VERSION")) {
        throw new BackpackError(
          "UNAVAILABLE",
          `/${key} is being written by another client at the same time; retry`,
          { cause: e, retryAfterSec: 1 },
        );
      }
      const status = e.details?.status;
      if (typeof status === "number" && status >= 400 && status < 500 && status !== 408 && status !== 429) {
        // The node refused this request itself (a wrong node token, a key or size it does not take): every
        // node of the cluster would say the same, and the node is healthy. Not the client's fault either.
        throw new BackpackError("UPSTREAM_FAILED", `server ${serverId} refused the upload: ${e.message}`, {
          cause: e,
          details: { node_code: e.code },
        });
      }
      lastError = e;
      // A node that is busy is not failing: it is not marked suspect for it.
      if (!hasCode(e, "OVERLOADED")) ctx.health.recordFailure(serverId);
      ctx.log.warn({ server: serverId, key, err: e.message }, "upload to a node failed; trying the next");
    }
  }
  throw new BackpackError(
    "UNAVAILABLE",
    `Could not upload file /${key} to any node: ${tried.join(",") || "(none reachable)"}`,
    { cause: lastError, retryAfterSec: 1, details: lastError ? { last_error: lastError.message } : {} },
  );
}

/** One PUT of the upload to a node, stamped again (up to STALE_RETRIES times) while the node holds newer. */
async function putNewest(
  ctx: CoordinatorContext,
  base: string,
  key: string,
  body: BodySource,
  small: boolean,
  contentType: string | undefined,
  declaredCrc: number | undefined,
): Promise<{ crc: number; version: Version }> {
  for (let attempt = 0; ; attempt++) {
    const version = ctx.clock.next();
    try {
      const payload = (small ? body.buffer() : undefined) ?? body.open();
      const { crc } = await ctx.nodes.put(base, key, payload, {
        size: body.size,
        version,
        ...(contentType ? { contentType } : {}),
        ...(body.complete
          ? { expectedCrc: body.crc }
          : declaredCrc !== undefined
            ? { expectedCrc: declaredCrc }
            : {}),
      });
      return { crc, version };
    } catch (err) {
      const current = staleCurrent(err);
      if (current === undefined || attempt >= STALE_RETRIES || !body.replayable) throw err;
      ctx.clock.observe(current);
    }
  }
}

export interface ReplicationOutcome {
  /** Servers that hold the file now (the first one included). */
  holding: string[];
  /** Servers with a durably queued copy task. */
  queued: string[];
  /** Servers that neither hold the file nor have a task. */
  missing: string[];
}

/**
 * Makes sure every other server of the shard will hold the upload: one `copy` task each, pushed to the queue in
 * one call. When the queue cannot take them, or when `all` is asked, the coordinator copies from the server
 * that holds it to the others itself; copies that fail then go to the queue if it is usable.
 */
export async function replicate(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  shard: ShardInfo,
  key: string,
  stored: StoredUpload,
  body: BodySource,
  all: boolean,
): Promise<ReplicationOutcome> {
  const others = shard.servers.filter((s) => s !== stored.serverId);
  const outcome: ReplicationOutcome = { holding: [stored.serverId], queued: [], missing: [] };
  if (others.length === 0) return outcome;
  const taskFor = (target: string): ReplicationTask => ({
    op: "copy",
    shard: shard.id,
    sources: [stored.serverId],
    target,
    key,
    crc: formatChecksum(stored.crc),
    size: body.size,
    createdAt: ctx.now(),
    version: formatVersion(stored.version),
  });
  let toCopy = others;
  if (!all && ctx.queue.usable) {
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
    toCopy.map(async (target) => ({
      target,
      ok: await directCopy(ctx, snapshot, key, stored, body, target),
    })),
  );
  toCopy = [];
  for (const r of results) (r.ok ? outcome.holding : toCopy).push(r.target);
  if (toCopy.length > 0 && ctx.queue.usable) {
    try {
      await ctx.queue.push(toCopy.map(taskFor));
      outcome.queued.push(...toCopy);
      toCopy = [];
    } catch {
      // Reported as missing below.
    }
  }
  outcome.missing.push(...toCopy);
  return outcome;
}

/** Copies the upload to `target`: replays the body when it is held, else streams it from the first server. */
async function directCopy(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  key: string,
  stored: StoredUpload,
  body: BodySource,
  target: string,
): Promise<boolean> {
  const base = snapshot.servers[target]?.url;
  const source = snapshot.servers[stored.serverId]?.url;
  if (base === undefined || source === undefined) return false;
  try {
    const options = {
      size: body.size,
      expectedCrc: stored.crc,
      version: stored.version,
      ...(stored.contentType ? { contentType: stored.contentType } : {}),
    };
    if (body.replayable && body.complete) {
      await ctx.nodes.copy(base, key, body.buffer() ?? body.open(), options);
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
  }
}
