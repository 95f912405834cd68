/**
 * GetObject and HeadObject: one read of the object's file (its home shard: one node request), conditions and
 * `response-*` overrides applied here, a `Range` passed to the node; a multipart object's parts streamed in
 * order, one at a time.
 */
import { once } from "node:events";
import type { ServerResponse } from "node:http";
import type { Dispatcher } from "undici";
import { expectStatus } from "../client/node-answers.js";
import { bucketOf, type S3Context, type S3Request } from "./context.js";
import { S3Error } from "./errors.js";
import { decodeManifest, parseRange, type Manifest } from "./manifest.js";
import { META, objectName } from "./names.js";
import { bareEtag, etagOf, objectSize, s3Headers } from "./object-headers.js";
import { requireAccess } from "./access.js";

const OVERRIDES = [
  "content-type",
  "content-language",
  "expires",
  "cache-control",
  "content-disposition",
  "content-encoding",
] as const;

export async function getObject(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "read");
  if (r.query.has("partNumber"))
    throw new S3Error("NotImplemented", "GetObject by partNumber is not supported");
  if (r.query.has("versionId") && r.query.get("versionId") !== "null") {
    throw new S3Error("NotImplemented", "versioning is not supported");
  }
  const head = r.req.method === "HEAD";
  const bucket = ctx.store.bucket(bucketOf(r));
  const name = objectName(bucket.name, r.objectKey as string);
  const range = r.req.headers.range;
  const opened = await ctx.store.open(bucket, name, {
    method: head ? "HEAD" : "GET",
    headers: range === undefined ? {} : { range },
  });
  if (opened === undefined) throw new S3Error("NoSuchKey", "The specified key does not exist.");
  let up = opened.res;
  let ranged = range !== undefined;
  if (up.statusCode === 416) {
    // The range may be past the end of a manifest, not of the object: read the file whole to see.
    await up.body.dump();
    up = await ctx.store.read(opened.shard, name, {}, head ? "HEAD" : "GET");
    ranged = false;
    if (up.statusCode === 200 && up.headers[META.size] === undefined) {
      await up.body.dump();
      throw new S3Error("InvalidRange", "The requested range is not satisfiable");
    }
  }
  await expectStatus(up, [200, 206], "coordinator", name);
  const stored = up.headers;
  try {
    checkConditions(r, etagOf(stored), Date.parse(String(stored["last-modified"] ?? "")));
  } catch (err) {
    await up.body.dump();
    throw err;
  }
  const headers: Record<string, string> = {
    ...s3Headers(stored),
    "accept-ranges": "bytes",
    "x-amz-request-id": r.requestId,
  };
  applyOverrides(r, headers);
  if (stored[META.size] === undefined) {
    for (const h of ["content-length", "content-range"] as const) {
      const v = stored[h];
      if (typeof v === "string") headers[h] = v;
    }
    r.res.writeHead(up.statusCode, headers);
    if (head) {
      await up.body.dump();
      r.res.end();
      return;
    }
    await writeAll(up.body as AsyncIterable<Buffer>, r.res);
    r.res.end();
    return;
  }
  // A multipart object: the file is its manifest.
  const size = objectSize(stored, 0);
  if (head) {
    await up.body.dump();
    r.res.writeHead(200, { ...headers, "content-length": String(size) });
    r.res.end();
    return;
  }
  const manifest = await readManifest(ctx, up, ranged, opened.shard, name);
  const wanted = parseRange(range, size);
  const start = wanted?.start ?? 0;
  const end = wanted?.end ?? size - 1;
  headers["content-length"] = String(Math.max(0, end - start + 1));
  if (wanted) headers["content-range"] = `bytes ${start}-${end}/${size}`;
  r.res.writeHead(wanted ? 206 : 200, headers);
  await writeAll(readParts(ctx, manifest, start, end), r.res);
  r.res.end();
}

/** The manifest's bytes: this answer's, or (when a Range cut it) the whole file read again. */
export async function readManifest(
  ctx: S3Context,
  up: Dispatcher.ResponseData,
  ranged: boolean,
  shard: string,
  name: string,
): Promise<Manifest> {
  if (!ranged) return decodeManifest(Buffer.from(await up.body.arrayBuffer()));
  await up.body.dump();
  const again = await ctx.store.read(shard, name);
  await expectStatus(again, [200], "coordinator", name);
  return decodeManifest(Buffer.from(await again.body.arrayBuffer()));
}

/** Bytes `start..end` of a multipart object, part by part (one part's transfer at a time). */
export async function* readParts(
  ctx: S3Context,
  manifest: Manifest,
  start: number,
  end: number,
): AsyncGenerator<Buffer> {
  let offset = 0;
  for (const part of manifest.parts) {
    const first = offset;
    const last = offset + part.size - 1;
    offset += part.size;
    if (part.size === 0 || last < start || first > end) continue;
    const from = Math.max(start, first) - first;
    const to = Math.min(end, last) - first;
    const whole = from === 0 && to === part.size - 1;
    const up = await ctx.store.read(part.shard, part.name, whole ? {} : { range: `bytes=${from}-${to}` });
    await expectStatus(up, [whole ? 200 : 206], "coordinator", part.name);
    yield* up.body as AsyncIterable<Buffer>;
  }
}

/** Writes a body to the answer with backpressure; stops (and drops the rest) if the client left. */
async function writeAll(source: AsyncIterable<Buffer>, res: ServerResponse): Promise<void> {
  for await (const chunk of source) {
    if (res.destroyed) return;
    if (!res.write(chunk)) await Promise.race([once(res, "drain"), once(res, "close")]);
  }
}

function applyOverrides(r: S3Request, headers: Record<string, string>): void {
  for (const name of OVERRIDES) {
    const v = r.query.get(`response-${name}`);
    if (v !== undefined) headers[name] = v;
  }
}

/** S3's conditional GET: If-Match / If-Unmodified-Since → 412; If-None-Match / If-Modified-Since → 304. */
function checkConditions(r: S3Request, etag: string, modifiedMs: number): void {
  const h = r.req.headers;
  const modifiedSec = Math.floor(modifiedMs / 1000);
  if (h["if-match"] !== undefined) {
    if (!matches(h["if-match"], etag))
      throw new S3Error(
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
      );
  } else if (h["if-unmodified-since"] !== undefined) {
    const since = Date.parse(h["if-unmodified-since"]);
    if (!Number.isNaN(since) && modifiedSec > Math.floor(since / 1000)) {
      throw new S3Error(
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
      );
    }
  }
  if (h["if-none-match"] !== undefined) {
    if (matches(h["if-none-match"], etag)) throw new S3Error("NotModified", "Not Modified");
  } else if (h["if-modified-since"] !== undefined) {
    const since = Date.parse(h["if-modified-since"]);
    if (!Number.isNaN(since) && modifiedSec <= Math.floor(since / 1000))
      throw new S3Error("NotModified", "Not Modified");
  }
}

function matches(list: string, etag: string): boolean {
  const mine = bareEtag(etag);
  return list.split(",").some((e) => e.trim() === "*" || bareEtag(e) === mine);
}
