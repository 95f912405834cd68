/**
 * Multipart uploads: an upload is a file of its own (`_s3/uploads/<bucket>/<id>`, its key and object headers in
 * its stored headers), each part an ordinary file (`_s3/parts/<bucket>/<id>/<n>`, its MD5 stored with it), and
 * CompleteMultipartUpload writes the object's file as a manifest naming the parts (docs/s3.md).
 */
import { createHash, randomBytes } from "node:crypto";
import { checksum, formatChecksum } from "../common/checksum.js";
import type { ListEntry } from "../client/coordinator-client.js";
import type { S3Bucket } from "../cluster/types.js";
import { requireAccess } from "./access.js";
import { receiveBody } from "./body.js";
import { bucketOf, type S3Context, type S3Request } from "./context.js";
import { S3Error } from "./errors.js";
import { encodeManifest, type ManifestPart } from "./manifest.js";
import {
  checkUploadId,
  META,
  objectName,
  partName,
  partsPrefix,
  uploadName,
  uploadsPrefix,
} from "./names.js";
import { bareEtag, objectHeadersOf, storedHeaders } from "./object-headers.js";
import { asksCrc32, bodyLimits, receiveXml, storeVerified, writableName } from "./put-handler.js";
import { isoTime, sendEmpty, sendXml } from "./respond.js";
import { childText, el, elements, requireRoot } from "./xml.js";

export const MAX_PARTS = 10_000;

export async function createMultipartUpload(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "write");
  const bucket = ctx.store.bucket(bucketOf(r));
  const key = r.objectKey as string;
  writableName(bucket.name, key);
  const id = randomBytes(16).toString("hex");
  await ctx.store.put(bucket, {
    name: uploadName(bucket.name, id),
    size: 0,
    body: () => Buffer.alloc(0),
    headers: { ...storedHeaders(r.req.headers), [META.key]: encodeURIComponent(key), [META.state]: "open" },
  });
  sendXml(
    r.res,
    "InitiateMultipartUploadResult",
    el("Bucket", bucket.name) + el("Key", key) + el("UploadId", id),
    { "x-amz-request-id": r.requestId },
  );
}

/** An open upload's stored headers, or NoSuchUpload (unknown, completed, aborted, or of another key). */
async function openUpload(
  ctx: S3Context,
  bucket: S3Bucket,
  id: string,
  key: string,
): Promise<Record<string, string | string[] | undefined>> {
  const opened = await ctx.store.open(bucket, uploadName(bucket.name, id), { method: "HEAD" });
  await opened?.res.body.dump();
  const h = opened?.res.headers;
  if (
    h === undefined ||
    opened?.res.statusCode !== 200 ||
    h[META.state] !== "open" ||
    h[META.key] !== encodeURIComponent(key)
  ) {
    throw new S3Error(
      "NoSuchUpload",
      "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    );
  }
  return h;
}

function partNumberOf(text: string | undefined): number {
  const n = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || n < 1 || n > MAX_PARTS) {
    throw new S3Error(
      "InvalidArgument",
      `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`,
    );
  }
  return n;
}

export async function uploadPart(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "write");
  if (r.req.headers["x-amz-copy-source"] !== undefined)
    throw new S3Error("NotImplemented", "UploadPartCopy is not supported");
  const bucket = ctx.store.bucket(bucketOf(r));
  const n = partNumberOf(r.query.get("partNumber"));
  const id = checkUploadId(r.query.get("uploadId"));
  await openUpload(ctx, bucket, id, r.objectKey as string);
  const body = await receiveBody(r.req, r.signed, r.key.secret, bodyLimits(ctx));
  try {
    await storeVerified(ctx, bucket, partName(bucket.name, id, n), body, { [META.etag]: body.md5Hex });
  } finally {
    await body.dispose();
  }
  const headers: Record<string, string> = { etag: `"${body.md5Hex}"`, "x-amz-request-id": r.requestId };
  if (asksCrc32(r)) headers["x-amz-checksum-crc32"] = body.crc32Base64;
  sendEmpty(r.res, 200, headers);
}

/** The stored parts of an upload by number. */
async function storedParts(ctx: S3Context, bucket: string, id: string): Promise<Map<number, ListEntry>> {
  const prefix = partsPrefix(bucket, id);
  const files = await ctx.store.listAll(prefix, MAX_PARTS);
  return new Map(files.map((f) => [Number(f.key.slice(prefix.length)), f]));
}

export async function completeMultipartUpload(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "write");
  const bucket = ctx.store.bucket(bucketOf(r));
  const key = r.objectKey as string;
  const id = checkUploadId(r.query.get("uploadId"));
  const upload = await openUpload(ctx, bucket, id, key);
  const inner = requireRoot(await receiveXml(ctx, r), "CompleteMultipartUpload");
  const asked = elements(inner, "Part").map((p) => ({
    n: partNumberOf(childText(p, "PartNumber")),
    etag: bareEtag(childText(p, "ETag") ?? ""),
  }));
  if (asked.length === 0) throw new S3Error("MalformedXML", "the part list is empty");
  for (let i = 1; i < asked.length; i++) {
    if ((asked[i] as { n: number }).n <= (asked[i - 1] as { n: number }).n) {
      throw new S3Error(
        "InvalidPartOrder",
        "The list of parts was not in ascending order. Parts must be ordered by part number.",
      );
    }
  }
  const stored = await storedParts(ctx, bucket.name, id);
  const parts: ManifestPart[] = [];
  const md5s: Buffer[] = [];
  for (const [i, a] of asked.entries()) {
    const file = stored.get(a.n);
    const etag = file?.headers?.[META.etag];
    if (file === undefined || etag === undefined || etag !== a.etag) {
      throw new S3Error("InvalidPart", `part ${a.n} was not uploaded, or its ETag does not match`);
    }
    if (i < asked.length - 1 && file.size < ctx.config.minPartBytes) {
      throw new S3Error(
        "EntityTooSmall",
        `part ${a.n} is smaller than the minimum part size (${ctx.config.minPartBytes} bytes)`,
      );
    }
    parts.push({ n: a.n, name: file.key, shard: file.shard, size: file.size });
    md5s.push(Buffer.from(etag, "hex"));
  }
  const size = parts.reduce((sum, p) => sum + p.size, 0);
  const etag = `${createHash("md5").update(Buffer.concat(md5s)).digest("hex")}-${parts.length}`;
  const manifest = encodeManifest({ parts, size });
  await ctx.store.put(bucket, {
    name: objectName(bucket.name, key),
    size: manifest.length,
    body: () => manifest,
    headers: { ...objectHeadersOf(upload), [META.etag]: etag, [META.size]: String(size), [META.upload]: id },
    checksum: formatChecksum(checksum(manifest)),
  });
  await markComplete(ctx, bucket, id, key);
  // Parts uploaded but left out of the list are not part of the object.
  const used = new Set(parts.map((p) => p.n));
  await Promise.all(
    [...stored]
      .filter(([n]) => !used.has(n))
      .map(([, f]) => ctx.store.deleteOn(f.shard, f.key).catch(() => false)),
  );
  sendXml(
    r.res,
    "CompleteMultipartUploadResult",
    el("Location", `/${bucket.name}/${key}`) +
      el("Bucket", bucket.name) +
      el("Key", key) +
      el("ETag", `"${etag}"`),
    { "x-amz-request-id": r.requestId },
  );
}

async function markComplete(ctx: S3Context, bucket: S3Bucket, id: string, key: string): Promise<void> {
  await ctx.store.put(bucket, {
    name: uploadName(bucket.name, id),
    size: 0,
    body: () => Buffer.alloc(0),
    headers: { [META.key]: encodeURIComponent(key), [META.state]: "complete" },
  });
}

/** Deletes an upload's parts, then its file. */
export async function dropUpload(ctx: S3Context, bucket: S3Bucket, id: string): Promise<void> {
  const parts = await ctx.store.listAll(partsPrefix(bucket.name, id), MAX_PARTS);
  await Promise.all(parts.map((f) => ctx.store.deleteOn(f.shard, f.key)));
  await ctx.store.delete(bucket, uploadName(bucket.name, id));
}

export async function abortMultipartUpload(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "write");
  const bucket = ctx.store.bucket(bucketOf(r));
  const id = checkUploadId(r.query.get("uploadId"));
  await openUpload(ctx, bucket, id, r.objectKey as string);
  await dropUpload(ctx, bucket, id);
  sendEmpty(r.res, 204, { "x-amz-request-id": r.requestId });
}

function intParam(r: S3Request, name: string, fallback: number, max: number): number {
  const text = r.query.get(name);
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text)) throw new S3Error("InvalidArgument", `${name} must be a whole number`);
  return Math.min(max, Number(text));
}

export async function listParts(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "read");
  const bucket = ctx.store.bucket(bucketOf(r));
  const key = r.objectKey as string;
  const id = checkUploadId(r.query.get("uploadId"));
  await openUpload(ctx, bucket, id, key);
  const marker = intParam(r, "part-number-marker", 0, MAX_PARTS);
  const max = intParam(r, "max-parts", 1000, 1000);
  const all = [...(await storedParts(ctx, bucket.name, id))]
    .filter(([n]) => n > marker)
    .sort(([a], [b]) => a - b);
  const page = all.slice(0, max);
  const truncated = all.length > page.length;
  const inner =
    el("Bucket", bucket.name) +
    el("Key", key) +
    el("UploadId", id) +
    el("PartNumberMarker", marker) +
    (truncated ? el("NextPartNumberMarker", page.at(-1)?.[0]) : "") +
    el("MaxParts", max) +
    el("IsTruncated", truncated) +
    `<StorageClass>STANDARD</StorageClass>` +
    page
      .map(
        ([n, f]) =>
          `<Part>${el("PartNumber", n)}${el("LastModified", isoTime(f.lastModified))}` +
          `${el("ETag", `"${f.headers?.[META.etag] ?? ""}"`)}${el("Size", f.size)}</Part>`,
      )
      .join("");
  sendXml(r.res, "ListPartsResult", inner, { "x-amz-request-id": r.requestId });
}

/** Uploads listed by ListMultipartUploads at most (they are sorted here: the files are ordered by id). */
const MAX_LISTED_UPLOADS = 100_000;

export async function listMultipartUploads(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "read");
  const bucket = ctx.store.bucket(bucketOf(r));
  const prefix = r.query.get("prefix") ?? "";
  const delimiter = r.query.get("delimiter") || undefined;
  const keyMarker = r.query.get("key-marker") ?? "";
  const idMarker = r.query.get("upload-id-marker") ?? "";
  const max = intParam(r, "max-uploads", 1000, 1000);
  const base = uploadsPrefix(bucket.name);
  const uploads = (await ctx.store.listAll(base, MAX_LISTED_UPLOADS))
    .filter((f) => f.headers?.[META.state] === "open")
    .map((f) => ({
      key: decodeURIComponent(f.headers?.[META.key] ?? ""),
      id: f.key.slice(base.length),
      at: f.lastModified,
    }))
    .filter((u) => u.key.startsWith(prefix))
    .filter((u) => u.key > keyMarker || (u.key === keyMarker && idMarker !== "" && u.id > idMarker))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : 1));
  const listed: string[] = [];
  const prefixes: string[] = [];
  let count = 0;
  let truncated = false;
  let last: { key: string; id: string } | undefined;
  for (const u of uploads) {
    const at = delimiter ? u.key.indexOf(delimiter, prefix.length) : -1;
    const common = at === -1 ? undefined : u.key.slice(0, at + (delimiter as string).length);
    if (common !== undefined && common === prefixes.at(-1)) continue;
    if (count >= max) {
      truncated = true;
      break;
    }
    count++;
    last = u;
    if (common !== undefined) prefixes.push(common);
    else {
      listed.push(
        `<Upload>${el("Key", u.key)}${el("UploadId", u.id)}${el("Initiated", isoTime(u.at))}` +
          `<StorageClass>STANDARD</StorageClass></Upload>`,
      );
    }
  }
  const inner =
    el("Bucket", bucket.name) +
    el("KeyMarker", keyMarker) +
    el("UploadIdMarker", idMarker) +
    (truncated && last ? el("NextKeyMarker", last.key) + el("NextUploadIdMarker", last.id) : "") +
    el("Prefix", prefix) +
    el("Delimiter", delimiter) +
    el("MaxUploads", max) +
    el("IsTruncated", truncated) +
    listed.join("") +
    prefixes.map((p) => `<CommonPrefixes>${el("Prefix", p)}</CommonPrefixes>`).join("");
  sendXml(r.res, "ListMultipartUploadsResult", inner, { "x-amz-request-id": r.requestId });
}
