/** PutObject and CopyObject: the body verified whole, then one targeted PUT of the object's file. */
import { validateKey } from "../common/key.js";
import type { S3Bucket } from "../cluster/types.js";
import { allows, requireAccess } from "./access.js";
import { collectBody, receiveBody, trailerNames, type BodyLimits, type VerifiedBody } from "./body.js";
import { bucketOf, type S3Context, type S3Request } from "./context.js";
import { S3Error } from "./errors.js";
import { readManifest, readParts } from "./get-handler.js";
import { META, objectName } from "./names.js";
import { objectHeadersOf, objectSize, storedHeaders } from "./object-headers.js";
import { isoTime, sendEmpty, sendXml } from "./respond.js";
import { uriDecode } from "./sigv4.js";
import { el } from "./xml.js";
import { expectStatus } from "../client/node-answers.js";

export function bodyLimits(ctx: S3Context): BodyLimits {
  return {
    maxBytes: ctx.config.maxBodyBytes,
    memoryBytes: ctx.config.memoryBytes,
    tmpDir: ctx.config.tmpDir,
  };
}

/** Request XML documents (DeleteObjects, CompleteMultipartUpload) are at most this long. */
const MAX_XML_BYTES = 2 * 1024 ** 2;

/** A request's XML body, verified like any body (checksums, signature), as text. */
export async function receiveXml(ctx: S3Context, r: S3Request): Promise<string> {
  const limits = { ...bodyLimits(ctx), maxBytes: MAX_XML_BYTES, memoryBytes: MAX_XML_BYTES };
  const body = await receiveBody(r.req, r.signed, r.key.secret, limits);
  try {
    return (body.payload() as Buffer).toString("utf8");
  } finally {
    await body.dispose();
  }
}

/** The native name of a key of a bucket, refused up front when the store would refuse it. */
export function writableName(bucket: string, key: string): string {
  return validateKey(objectName(bucket, key));
}

/** Stores a verified body as a file on the name's shard; resolves with the shard. */
export async function storeVerified(
  ctx: S3Context,
  bucket: S3Bucket,
  name: string,
  body: VerifiedBody,
  headers: Record<string, string>,
): Promise<string> {
  return ctx.store.put(bucket, {
    name,
    size: body.size,
    body: () => body.payload(),
    headers,
    checksum: body.crc32Hex,
  });
}

export async function putObject(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "write");
  if (r.req.headers["x-amz-copy-source"] !== undefined) return copyObject(ctx, r);
  const bucket = ctx.store.bucket(bucketOf(r));
  const name = writableName(bucket.name, r.objectKey as string);
  const body = await receiveBody(r.req, r.signed, r.key.secret, bodyLimits(ctx));
  try {
    await storeVerified(ctx, bucket, name, body, {
      ...storedHeaders(r.req.headers),
      [META.etag]: body.md5Hex,
    });
  } finally {
    await body.dispose();
  }
  const headers: Record<string, string> = { etag: `"${body.md5Hex}"`, "x-amz-request-id": r.requestId };
  if (asksCrc32(r)) headers["x-amz-checksum-crc32"] = body.crc32Base64;
  sendEmpty(r.res, 200, headers);
}

/** The client sent a CRC32 (header or trailer): it gets it back, as S3 answers. */
export function asksCrc32(r: S3Request): boolean {
  return (
    r.req.headers["x-amz-checksum-crc32"] !== undefined ||
    trailerNames(r.req).includes("x-amz-checksum-crc32")
  );
}

/** `x-amz-copy-source: /bucket/key` (or without the leading slash), percent-encoded. */
export function parseCopySource(header: string): { bucket: string; key: string } {
  const q = header.indexOf("?");
  const path = q === -1 ? header : header.slice(0, q);
  if (q !== -1 && !/^versionId=null$/.test(header.slice(q + 1))) {
    throw new S3Error("NotImplemented", "copying a version is not supported");
  }
  const text = uriDecode(path.replace(/^\//, ""));
  const slash = text.indexOf("/");
  if (slash <= 0 || slash === text.length - 1) {
    throw new S3Error("InvalidArgument", "x-amz-copy-source must be /<bucket>/<key>");
  }
  return { bucket: text.slice(0, slash), key: text.slice(slash + 1) };
}

/** The whole body of an object (a multipart one's parts in order), with its stored headers. */
export async function openObject(
  ctx: S3Context,
  bucket: S3Bucket,
  name: string,
): Promise<{
  source: AsyncIterable<Buffer>;
  headers: Record<string, string | string[] | undefined>;
  size: number;
}> {
  const opened = await ctx.store.open(bucket, name);
  if (opened === undefined) throw new S3Error("NoSuchKey", "The specified key does not exist.");
  const up = opened.res;
  await expectStatus(up, [200], "coordinator", name);
  const fileSize = Number(up.headers["content-length"] ?? 0);
  if (up.headers[META.size] === undefined) {
    return { source: up.body as AsyncIterable<Buffer>, headers: up.headers, size: fileSize };
  }
  const manifest = await readManifest(ctx, up, false, opened.shard, name);
  return {
    source: readParts(ctx, manifest, 0, manifest.size - 1),
    headers: up.headers,
    size: objectSize(up.headers, manifest.size),
  };
}

async function copyObject(ctx: S3Context, r: S3Request): Promise<void> {
  const src = parseCopySource(String(r.req.headers["x-amz-copy-source"]));
  if (!allows(r.key, src.bucket, "read")) throw new S3Error("AccessDenied", "Access Denied");
  const bucket = ctx.store.bucket(bucketOf(r));
  const name = writableName(bucket.name, r.objectKey as string);
  const source = await openObject(ctx, ctx.store.bucket(src.bucket), objectName(src.bucket, src.key));
  const directive = r.req.headers["x-amz-metadata-directive"] ?? "COPY";
  if (directive !== "COPY" && directive !== "REPLACE") {
    throw new S3Error("InvalidArgument", "x-amz-metadata-directive must be COPY or REPLACE");
  }
  if (directive === "COPY" && src.bucket === bucket.name && src.key === r.objectKey) {
    throw new S3Error(
      "InvalidRequest",
      "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata.",
    );
  }
  const body = await collectBody(source.source, bodyLimits(ctx));
  try {
    const headers = directive === "REPLACE" ? storedHeaders(r.req.headers) : objectHeadersOf(source.headers);
    await storeVerified(ctx, bucket, name, body, { ...headers, [META.etag]: body.md5Hex });
  } finally {
    await body.dispose();
  }
  sendXml(
    r.res,
    "CopyObjectResult",
    el("LastModified", isoTime(ctx.now())) + el("ETag", `"${body.md5Hex}"`),
    { "x-amz-request-id": r.requestId },
  );
}
