/**
 * ListObjectsV2 and ListObjects over the coordinator's sorted listing (`GET /_list`): pages in key order,
 * merged across shards and replicas; a delimiter folds keys into common prefixes, and the listing skips past
 * each prefix's keys instead of reading them.
 */
import type { ListEntry } from "../client/coordinator-client.js";
import { requireAccess } from "./access.js";
import { bucketOf, type S3Context, type S3Request } from "./context.js";
import { S3Error } from "./errors.js";
import { etagOf, objectSize } from "./object-headers.js";
import { isoTime, sendXml } from "./respond.js";
import { uriEncode } from "./sigv4.js";
import { el } from "./xml.js";
import { parseVersion, versionTimeMs } from "../common/version.js";

/** Past every key that starts with a prefix: U+10FFFF is the largest character (F4 8F BF BF in UTF-8). */
const PAST = "\u{10FFFF}";

export interface ListingRequest {
  prefix: string;
  delimiter: string | undefined;
  maxKeys: number;
  /** List keys strictly after this one (a start-after, marker, or continuation token). */
  after: string | undefined;
}

export interface Listing {
  contents: { key: string; file: ListEntry }[];
  prefixes: string[];
  truncated: boolean;
  /** Where the next page starts (strictly after), when truncated. */
  next: string | undefined;
}

/** One page of a bucket's keys. Pure apart from `list`, the coordinator's listing. */
export async function listKeys(
  list: (
    prefix: string,
    after: string | undefined,
    limit: number,
  ) => Promise<{ entries: ListEntry[]; truncated: boolean }>,
  bucket: string,
  q: ListingRequest,
): Promise<Listing> {
  const base = `${bucket}/`;
  const out: Listing = { contents: [], prefixes: [], truncated: false, next: undefined };
  if (q.maxKeys === 0) return out;
  let after = q.after === undefined ? undefined : base + q.after;
  for (;;) {
    // Without a delimiter every entry is one of the page's keys: ask for what is left of them and one more
    // (whether the listing is truncated), not a whole page to learn that.
    const want = q.delimiter ? 1000 : Math.min(1000, q.maxKeys - out.contents.length + 1);
    const page = await list(base + q.prefix, after, want);
    for (const file of page.entries) {
      const key = file.key.slice(base.length);
      let common: string | undefined;
      if (q.delimiter) {
        const at = key.indexOf(q.delimiter, q.prefix.length);
        if (at !== -1) common = key.slice(0, at + q.delimiter.length);
      }
      if (common !== undefined && common === out.prefixes.at(-1)) continue;
      if (out.contents.length + out.prefixes.length >= q.maxKeys) {
        out.truncated = true;
        return out;
      }
      if (common !== undefined) {
        out.prefixes.push(common);
        out.next = common + PAST;
      } else {
        out.contents.push({ key, file });
        out.next = key;
      }
    }
    const last = page.entries.at(-1);
    if (!page.truncated || last === undefined) return out;
    const lastCommon = out.prefixes.at(-1);
    after =
      lastCommon !== undefined && last.key.startsWith(base + lastCommon)
        ? base + lastCommon + PAST
        : last.key;
  }
}

function maxKeysOf(r: S3Request): number {
  const text = r.query.get("max-keys");
  if (text === undefined) return 1000;
  if (!/^\d+$/.test(text)) throw new S3Error("InvalidArgument", "max-keys must be a whole number");
  return Math.min(1000, Number(text));
}

export async function listObjects(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "read");
  const bucket = ctx.store.bucket(bucketOf(r));
  const v2 = r.query.get("list-type") === "2";
  const encoding = r.query.get("encoding-type");
  if (encoding !== undefined && encoding !== "url")
    throw new S3Error("InvalidArgument", "encoding-type must be url");
  const enc = (text: string | undefined): string | undefined =>
    text === undefined || encoding !== "url" ? text : uriEncode(text, true);
  const prefix = r.query.get("prefix") ?? "";
  const delimiter = r.query.get("delimiter") || undefined;
  const maxKeys = maxKeysOf(r);
  const token = r.query.get("continuation-token");
  const startAfter = r.query.get("start-after");
  const marker = r.query.get("marker");
  let after: string | undefined;
  if (v2) after = token !== undefined ? decodeToken(token) : startAfter;
  else if (marker)
    after = delimiter && marker.endsWith(delimiter) && marker.startsWith(prefix) ? marker + PAST : marker;
  const listing = await listKeys((p, a, n) => ctx.store.list(p, a, n), bucket.name, {
    prefix,
    delimiter,
    maxKeys,
    after,
  });

  const contents = listing.contents
    .map(
      ({ key, file }) =>
        `<Contents>${el("Key", enc(key))}${el("LastModified", lastModifiedOf(file))}` +
        `${el("ETag", etagOf(file.headers ?? {}))}${el("Size", objectSize(file.headers ?? {}, file.size))}` +
        `<StorageClass>STANDARD</StorageClass></Contents>`,
    )
    .join("");
  const prefixes = listing.prefixes
    .map((p) => `<CommonPrefixes>${el("Prefix", enc(p))}</CommonPrefixes>`)
    .join("");
  let head = el("Name", bucket.name) + el("Prefix", enc(prefix)) + el("Delimiter", enc(delimiter));
  head += el("MaxKeys", maxKeys) + el("EncodingType", encoding) + el("IsTruncated", listing.truncated);
  if (v2) {
    head += el("KeyCount", listing.contents.length + listing.prefixes.length);
    head += el("ContinuationToken", token) + el("StartAfter", enc(startAfter));
    if (listing.truncated && listing.next !== undefined)
      head += el("NextContinuationToken", encodeToken(listing.next));
  } else {
    head += el("Marker", enc(marker ?? ""));
    if (listing.truncated && listing.next !== undefined)
      head += el("NextMarker", enc(listing.next.replace(PAST, "")));
  }
  sendXml(r.res, "ListBucketResult", head + contents + prefixes, { "x-amz-request-id": r.requestId });
}

/**
 * An entry's LastModified: its version's time to the second, as `Last-Modified` on a GET, without parsing
 * the entry's HTTP date (a page is a thousand of them).
 */
function lastModifiedOf(file: ListEntry): string {
  const v = parseVersion(file.version);
  return isoTime(v === undefined ? file.lastModified : Math.floor(versionTimeMs(v) / 1000) * 1000);
}

function encodeToken(after: string): string {
  return Buffer.from(after, "utf8").toString("base64url");
}

function decodeToken(token: string): string {
  const text = Buffer.from(token, "base64url").toString("utf8");
  if (encodeToken(text) !== token)
    throw new S3Error("InvalidArgument", "The continuation token provided is incorrect");
  return text;
}
