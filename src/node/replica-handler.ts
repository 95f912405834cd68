import type { IncomingMessage, ServerResponse } from "node:http";
import { formatChecksum } from "../common/checksum.js";
import { BackpackError } from "../common/errors.js";
import { sendJson } from "../common/http.js";
import { pageSummary } from "../common/page-summary.js";
import { formatVersion } from "../common/version.js";
import { KEYS_PATH } from "../client/node-client.js";
import type { NodeContext } from "./context.js";

/** Paths under this prefix are the node's own (replica comparison), never keys. */
export const REPLICA_PREFIX = "/_backpack/";

const MAX_LIST = 10_000;

/**
 * What repair compares (docs/http-api.md, "Replica comparison"):
 * - `GET /_backpack/digest`: every bucket's 64-bit digest, as hex (16 digits per bucket, bucket 0 first);
 * - `GET /_backpack/list?bucket=<n>[&after=<key>][&limit=<n>]`: a bucket's entries in key order.
 * And what the coordinator's listing merges: `GET /_backpack/keys?[prefix=<p>][&after=<key>][&limit=<n>]`,
 * every key in key order (from the index's key order: no sort per request), or with `&summary=1` the page's
 * summary (common/page-summary.ts).
 * A node back after longer than its tombstone grace period answers 409 AWAY_TOO_LONG to all: repair must not
 * merge it, nor a listing (it may have missed deletes the others have forgotten), until an operator resets it.
 */
export function handleReplica(
  ctx: NodeContext,
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
): void | Promise<void> {
  if (ctx.awayTooLong) {
    throw new BackpackError("AWAY_TOO_LONG", ctx.awayTooLong, {
      details: { reset: "wipe the data dir, or --rejoin" },
    });
  }
  const query = new URLSearchParams((req.url ?? "").split("?")[1] ?? "");
  if (path === `${REPLICA_PREFIX}digest`) {
    const d = ctx.store.digest();
    const hex = Buffer.alloc(d.buckets * 8);
    for (let b = 0; b < d.buckets; b++) {
      hex.writeUInt32BE(d.hashes[2 * b]!, 8 * b);
      hex.writeUInt32BE(d.hashes[2 * b + 1]!, 8 * b + 4);
    }
    const { objects, checksumErrors, scrub } = ctx.store.stats();
    // What repair reports as this node's health comes along: no second request per node and comparison.
    sendJson(res, 200, {
      buckets: d.buckets,
      entries: d.entries,
      objects,
      checksumErrors,
      scrub,
      digest: hex.toString("hex"),
    });
    return;
  }
  if (path === `${REPLICA_PREFIX}list`) {
    const bucket = Number(query.get("bucket"));
    if (!Number.isInteger(bucket) || bucket < 0 || bucket >= ctx.store.digest().buckets) {
      throw new BackpackError("BAD_REQUEST", "bucket must be a bucket number (0-4095)");
    }
    const limit = listLimit(query);
    const page = ctx.store.listBucket(bucket, query.get("after") ?? undefined, limit);
    sendJson(res, 200, {
      bucket,
      more: page.more,
      entries: page.entries.map((e) => ({
        key: e.key,
        version: formatVersion(e.version),
        crc: formatChecksum(e.crc),
        size: e.size,
        ...(e.deleted ? { deleted: true } : {}),
        ...(e.damaged ? { damaged: true } : {}),
      })),
    });
    return;
  }
  if (path === KEYS_PATH) return sendKeys(ctx, res, query);
  throw new BackpackError("NOT_FOUND", `${path} is not a route of the node`);
}

function listLimit(query: URLSearchParams): number {
  const limit = Number(query.get("limit") ?? 1000);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST) {
    throw new BackpackError("BAD_REQUEST", `limit must be 1-${MAX_LIST}`);
  }
  return limit;
}

/**
 * `GET /_backpack/keys`: a page of the key order, or its summary (the first one waits while the order is
 * built).
 */
async function sendKeys(ctx: NodeContext, res: ServerResponse, query: URLSearchParams): Promise<void> {
  const limit = listLimit(query);
  const summary = query.get("summary") === "1";
  const page = await ctx.store.listKeys(
    query.get("prefix") ?? "",
    query.get("after") ?? undefined,
    limit,
    summary,
  );
  if (summary) {
    const entries = page.entries.map((e) => ({
      key: e.key,
      version: formatVersion(e.version),
      deleted: e.deleted,
    }));
    sendJson(res, 200, {
      more: page.more,
      count: entries.length,
      last: entries[entries.length - 1]?.key ?? null,
      summary: pageSummary(entries),
    });
    return;
  }
  sendJson(res, 200, {
    more: page.more,
    // Fields left undefined are left out of the JSON (no spread per entry: a page is a thousand of them).
    entries: page.entries.map((e) => ({
      key: e.key,
      version: formatVersion(e.version),
      size: e.size,
      deleted: e.deleted || undefined,
      damaged: e.damaged || undefined,
      contentType: e.contentType,
      headers: e.headers,
    })),
  });
}
