import { BackpackError, hasCode, toBackpackError } from "../common/errors.js";
import { formatChecksum } from "../common/checksum.js";
import type { StoredHeaders } from "../common/stored-headers.js";
import { compareVersions, type Version } from "../common/version.js";
import type { ClusterSnapshot, ShardInfo } from "../cluster/types.js";
import { staleCurrent } from "../client/node-answers.js";
import type { BodySource } from "./body-source.js";
import type { ReplicaMode } from "./config.js";
import type { CoordinatorContext } from "./context.js";
import type { ReplicaWrite } from "./lag-watch.js";
import { orderServers } from "./shard-chooser.js";

/** Why a node of the shard does not hold the upload after the writes. */
export type MissReason =
  /** Not tried: down or suspect (the ring, or a recent failure), or another node was enough (`one`). */
  | "skipped"
  /** The node failed the write (refused connection, reset, 5xx, timeout). */
  | "failed"
  /** Cut for falling behind the other replicas for longer than the write timeout. */
  | "slow";

export interface StoredUpload {
  /** The servers that hold the upload durably, in the order they answered. */
  holding: string[];
  /** Every other server of the shard, and why it does not hold it. */
  missed: Map<string, MissReason>;
  crc: number;
  /** The version it was stored with; every copy carries it. */
  version: Version;
  contentType: string | undefined;
  headers: StoredHeaders | undefined;
  /** Why the last failed write failed (for an answer that no node took the upload). */
  lastError: BackpackError | undefined;
}

/** Times the nodes may refuse an upload as older than what they hold before the upload fails. */
const STALE_RETRIES = 3;
/** Bodies up to this size are read whole before they go out: one buffer makes one write to each node. */
const SMALL_BODY_BYTES = 64 * 1024;

/**
 * Writes the body to the shard's nodes, all at once (fed from one read of the client's body, at the pace of
 * the slowest: see body-source.ts), and resolves once every write has ended: durable on its node (the node
 * answers 201 only then, with the CRC it stored, checked against what the client sent), failed, or cut by the
 * write timeout for falling behind the others (lag-watch.ts). When fewer than `need` nodes hold it and the body
 * can be sent again, the nodes not tried yet (suspect ones) are tried next. Throws the client's error when the
 * client is at fault (gone: CLIENT_ABORTED; too slow: REQUEST_TIMEOUT; a body that does not match its declared
 * checksum: CHECKSUM_MISMATCH): every write is then aborted, so no node indexes a partial record.
 *
 * The upload is stamped with a version from the coordinator's clock. A node that holds that version or a newer
 * one of the key (a write stamped by a coordinator whose clock is ahead) refuses it; the clock then moves past
 * the node's version and the upload is stamped again and written again where it was taken or refused, so that
 * a write made after another one always wins.
 */
export async function storeReplicas(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  shard: ShardInfo,
  key: string,
  body: BodySource,
  options: {
    mode: ReplicaMode;
    /** Durable copies wanted before the nodes not tried yet are given up. */
    need: number;
    contentType: string | undefined;
    /** Stored with the file (common/stored-headers.ts). */
    headers: StoredHeaders | undefined;
    /** The CRC-32 the client declared (`X-Backpack-Checksum`), if it did. */
    declaredCrc: number | undefined;
  },
): Promise<StoredUpload> {
  const { mode, need, contentType, headers, declaredCrc } = options;
  const suspect = (s: string): boolean => ctx.health.isSuspect(s);
  const untried = orderServers(shard.servers, suspect, ctx.random);
  const healthy = untried.filter((s) => !suspect(s)).length;
  const first = mode === "one" ? 1 : mode === "all" ? untried.length : Math.max(healthy, need);
  let targets = untried.splice(0, first);
  const stored: StoredUpload = {
    holding: [],
    missed: new Map(),
    crc: 0,
    version: ctx.clock.next(),
    contentType,
    headers,
    lastError: undefined,
  };
  const small = body.size <= SMALL_BODY_BYTES;
  if (small) await body.whole();
  const mismatch = (): BackpackError =>
    new BackpackError("CHECKSUM_MISMATCH", `the body of /${key} does not match its X-Backpack-Checksum`, {
      details: { declared: formatChecksum(declaredCrc ?? 0), received: formatChecksum(body.crc) },
    });
  const clientAtFault = (e: BackpackError): BackpackError | undefined => {
    if (body.failure) return body.failure;
    if (hasCode(e, "CLIENT_ABORTED")) return e;
    // The client's body does not match what it declared: its fault, whichever node saw it.
    if (declaredCrc !== undefined && body.complete && body.crc !== declaredCrc) return mismatch();
    if (hasCode(e, "REQUEST_TIMEOUT") && !body.complete) {
      // The node cut a client that sent its body too slowly: the client's doing, not the node's.
      return new BackpackError("REQUEST_TIMEOUT", "the client sent the body too slowly", { cause: e });
    }
    return undefined;
  };
  if (declaredCrc !== undefined && body.complete && body.crc !== declaredCrc) throw mismatch();

  for (let stale = 0; targets.length > 0;) {
    const results = await writeRound(ctx, snapshot, targets, key, body, stored, small, declaredCrc);
    let newest: Version | undefined;
    const refusedStale: string[] = [];
    for (const r of results) {
      if (r.ok) {
        stored.holding.push(r.serverId);
        stored.missed.delete(r.serverId);
        continue;
      }
      const e = r.error;
      const fault = clientAtFault(e);
      if (fault) throw fault;
      if (hasCode(e, "STALE_VERSION")) {
        const current = staleCurrent(e);
        refusedStale.push(r.serverId);
        if (current && (newest === undefined || compareVersions(current, newest) > 0)) newest = current;
        stored.lastError = e;
        continue;
      }
      stored.lastError = e;
      stored.missed.set(r.serverId, r.cut ? "slow" : "failed");
      // A node that refused the request itself is healthy, and so is a busy one: neither is marked suspect.
      if (!refusedByNode(e) && !hasCode(e, "OVERLOADED")) ctx.health.recordFailure(r.serverId);
      ctx.log.warn(
        { server: r.serverId, key, err: e.message, cut: r.cut },
        r.cut ? "upload to a node fell behind the other replicas; handing it off" : "upload to a node failed",
      );
    }
    if (refusedStale.length > 0) {
      if (stale >= STALE_RETRIES || !body.replayable) {
        throw new BackpackError(
          "UNAVAILABLE",
          `/${key} is being written by another client at the same time; retry`,
          { cause: stored.lastError, retryAfterSec: 1 },
        );
      }
      // Stamped again past the newest version seen, and written again where it was taken or refused.
      stale++;
      if (newest) ctx.clock.observe(newest);
      stored.version = ctx.clock.next();
      targets = [...stored.holding, ...refusedStale];
      stored.holding = [];
      continue;
    }
    if (stored.holding.length >= need || !body.replayable) break;
    targets = untried.splice(0, mode === "one" ? 1 : untried.length);
  }
  for (const s of untried) stored.missed.set(s, "skipped");
  stored.crc = body.crc;
  return stored;
}

/**
 * The node refused the request itself (a wrong node token, a key or size it does not take): every node of the
 * cluster would say the same, and the node is healthy. Neither the node's fault nor the client's.
 */
export function refusedByNode(e: BackpackError): boolean {
  const status = e.details?.status;
  return typeof status === "number" && status >= 400 && status < 500 && status !== 408 && status !== 429;
}

type WriteResult =
  { serverId: string; ok: true } | { serverId: string; ok: false; error: BackpackError; cut: boolean };

/** One PUT of the body to each of `targets` at once, each with its own reader; resolves once all have ended. */
async function writeRound(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  targets: readonly string[],
  key: string,
  body: BodySource,
  stored: StoredUpload,
  small: boolean,
  declaredCrc: number | undefined,
): Promise<WriteResult[]> {
  const whole = small ? body.buffer() : undefined;
  // Checked by every node: the client's CRC once the body is complete, else the one it declared.
  const expectedCrc = body.complete ? body.crc : declaredCrc;
  // Every reader is opened before any write starts: a body streamed through once lets a chunk go as soon as
  // every open reader has taken it.
  const readers = targets.map(() => (whole === undefined ? body.open() : undefined));
  const writes = targets.map((serverId, i) => {
    const base = snapshot.servers[serverId]?.url;
    let state = 0; // 0 in flight, 1 durable, -1 failed
    const reader = readers[i];
    // Only a streamed body's request is aborted when cut (its reader must let go of the body); a whole
    // body's request is left to end by itself, its answer dropped.
    const abort = whole === undefined ? new AbortController() : undefined;
    let finish!: (r: WriteResult) => void;
    const done = new Promise<WriteResult>((resolve) => (finish = resolve));
    const fail = (err: unknown, cut: boolean): void => {
      if (state !== 0) return;
      state = -1;
      reader?.close();
      const error = cut
        ? new BackpackError("UPSTREAM_TIMEOUT", `server ${serverId} fell behind the other replicas`)
        : (body.failure ?? toBackpackError(err));
      finish({ serverId, ok: false, error, cut });
    };
    try {
      if (base === undefined) {
        throw new BackpackError("UNAVAILABLE", `server ${serverId} is not in the cluster map`);
      }
      ctx.nodes
        .put(base, key, whole ?? reader!, {
          size: body.size,
          version: stored.version,
          ...(abort ? { signal: abort.signal } : {}),
          ...(stored.contentType ? { contentType: stored.contentType } : {}),
          ...(stored.headers ? { headers: stored.headers } : {}),
          ...(expectedCrc !== undefined ? { expectedCrc } : {}),
        })
        .then(({ crc }) => {
          if (state !== 0) return;
          // The node answered after reading the whole body, so `body.crc` covers every byte by now.
          if (crc !== body.crc) {
            throw new BackpackError(
              "UPSTREAM_FAILED",
              `${base} stored checksum ${formatChecksum(crc)}, the client sent ${formatChecksum(body.crc)}`,
            );
          }
          state = 1;
          reader?.close();
          ctx.health.recordSuccess(serverId);
          finish({ serverId, ok: true });
        })
        .catch((err: unknown) => fail(err, false));
    } catch (err) {
      fail(err, false);
    }
    const watched: ReplicaWrite = {
      progress: () => (state === 1 ? Infinity : state < 0 ? -1 : (reader?.bytes ?? body.size)),
      cut: () => {
        abort?.abort();
        fail(undefined, true);
      },
    };
    return { done, watched };
  });
  const entry = ctx.lagWatch.start(writes.map((w) => w.watched));
  try {
    return await Promise.all(writes.map((w) => w.done));
  } finally {
    ctx.lagWatch.stop(entry);
  }
}
