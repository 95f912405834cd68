/** S3's object headers to the store's stored headers and back (docs/s3.md, "Objects as stored"). Pure. */
import type { IncomingHttpHeaders } from "node:http";
import { META, PLAIN_HEADERS } from "./names.js";

type Headers = Readonly<Record<string, string | string[] | undefined>>;

function text(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}

/** The headers to store with an object, from its PutObject / CreateMultipartUpload / CopyObject request. */
export function storedHeaders(req: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PLAIN_HEADERS) {
    let v = text(req[name]);
    // aws-chunked is how the body travelled, not what it is.
    if (name === "content-encoding" && v !== undefined) {
      v = v
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "" && s !== "aws-chunked")
        .join(",");
    }
    if (v !== undefined && v !== "") out[name] = v;
  }
  for (const [name, v] of Object.entries(req)) {
    if (name.startsWith("x-amz-meta-") && v !== undefined) {
      out[META.userPrefix + name.slice("x-amz-meta-".length)] = text(v) ?? "";
    }
  }
  return out;
}

/** The object's own stored headers (type, caching, user metadata), as stored: what CopyObject carries over. */
export function objectHeadersOf(stored: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PLAIN_HEADERS) {
    const v = text(stored[name]);
    if (v !== undefined) out[name] = v;
  }
  for (const [name, v] of Object.entries(stored)) {
    if (name.startsWith(META.userPrefix) && v !== undefined) out[name] = text(v) ?? "";
  }
  return out;
}

/** The S3 answer headers of a stored file: type, caching, `x-amz-meta-*`, ETag, Last-Modified. */
export function s3Headers(stored: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(objectHeadersOf(stored))) {
    const user = name.startsWith(META.userPrefix);
    out[user ? `x-amz-meta-${name.slice(META.userPrefix.length)}` : name] = v;
  }
  out.etag = etagOf(stored);
  const modified = text(stored["last-modified"]);
  if (modified !== undefined) out["last-modified"] = modified;
  return out;
}

/** The object's S3 ETag (quoted): the stored MD5 form, else the store's own ETag (a file written natively). */
export function etagOf(stored: Headers): string {
  const s3 = text(stored[META.etag]);
  if (s3 !== undefined) return `"${s3}"`;
  return text(stored.etag) ?? `"${text(stored["x-backpack-version"]) ?? ""}"`;
}

/** The object's size: a manifest's declared size, else the file's. */
export function objectSize(stored: Headers, fileSize: number): number {
  const declared = text(stored[META.size]);
  return declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : fileSize;
}

/** Strips the quotes of an ETag as a client sends it (`"abc"`, `abc`, `W/"abc"`). */
export function bareEtag(etag: string): string {
  return etag
    .trim()
    .replace(/^W\//, "")
    .replace(/^"(.*)"$/, "$1");
}
