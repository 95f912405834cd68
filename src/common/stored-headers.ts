import { BackpackError } from "./errors.js";

/**
 * The headers a file keeps beside its content type (docs/http-api.md, "Stored headers"): a PUT's
 * `Cache-Control`, `Content-Disposition`, `Content-Encoding`, `Content-Language`, `Expires` and any
 * `X-Backpack-Meta-<name>`, stored in the record on every replica and answered back on GET and HEAD.
 * Names are lower-case.
 */
export type StoredHeaders = Readonly<Record<string, string>>;

export const STORED_HEADER_NAMES: readonly string[] = [
  "cache-control",
  "content-disposition",
  "content-encoding",
  "content-language",
  "expires",
];
export const META_HEADER_PREFIX = "x-backpack-meta-";
/** The stored headers of one file, encoded (below), at most: a request over it is refused. */
export const MAX_STORED_HEADER_BYTES = 8192;

/** `X-Backpack-Meta-` and a name of HTTP's token characters, lower-case. */
const META_NAME = /^x-backpack-meta-[!#$%&'*+.^_`|~0-9a-z-]+$/;
/** A value HTTP can carry: one byte per character, no control characters but tab. */
const BAD_VALUE = /[^\t\u0020-\u007e\u0080-\u00ff]/;

/** True for a header name (lower-case) that a file keeps. */
export function isStoredHeader(name: string): boolean {
  return STORED_HEADER_NAMES.includes(name) || META_NAME.test(name);
}

/**
 * The stored headers among a request's (or a node's answer's) headers, or undefined when there are none.
 * Refuses (HEADERS_TOO_LARGE) more than MAX_STORED_HEADER_BYTES of them, encoded, and (BAD_REQUEST) a value
 * that is not one byte per character (a header value as HTTP carries it).
 */
export function pickStoredHeaders(
  headers: Readonly<Record<string, string | string[] | number | undefined>>,
): StoredHeaders | undefined {
  let picked: Record<string, string> | undefined;
  for (const [raw, v] of Object.entries(headers)) {
    if (v === undefined) continue;
    const name = raw.toLowerCase();
    if (!isStoredHeader(name)) continue;
    const value = Array.isArray(v) ? v.join(", ") : String(v);
    if (BAD_VALUE.test(value)) {
      throw new BackpackError("BAD_REQUEST", `header ${name} has a character HTTP cannot carry`);
    }
    (picked ??= {})[name] = value;
  }
  if (picked !== undefined) {
    const bytes = storedHeadersBytes(picked);
    if (bytes > MAX_STORED_HEADER_BYTES) {
      throw new BackpackError(
        "HEADERS_TOO_LARGE",
        `the stored headers (Cache-Control, Content-*, Expires, X-Backpack-Meta-*) take ${bytes} bytes, over ${MAX_STORED_HEADER_BYTES}`,
        { details: { max_stored_header_bytes: MAX_STORED_HEADER_BYTES } },
      );
    }
  }
  return picked;
}

/**
 * The record's encoding (docs/storage.md): for each header in name order, `\n` ‖ name ‖ `:` ‖ value, one byte
 * per character (latin1, the bytes HTTP carried). Names hold no `:` and values no newline, so it parses back
 * unambiguously, and the content type before it (which holds no newline either) ends at the first `\n`.
 */
export function encodeStoredHeaders(headers: StoredHeaders): Buffer {
  let text = "";
  for (const name of Object.keys(headers).sort()) {
    const value = headers[name]!;
    // What pickStoredHeaders lets through; checked again for callers of the store itself.
    if (!isStoredHeader(name) || BAD_VALUE.test(value)) {
      throw new BackpackError("BAD_REQUEST", `${name} cannot be stored as a header`);
    }
    text += `\n${name}:${value}`;
  }
  return Buffer.from(text, "latin1");
}

/** Decodes `encodeStoredHeaders`'s bytes (empty: none). */
export function decodeStoredHeaders(bytes: Uint8Array): StoredHeaders | undefined {
  if (bytes.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const line of Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
    .toString("latin1")
    .split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) out[line.slice(0, colon)] = line.slice(colon + 1);
  }
  return out;
}

/** Bytes of `encodeStoredHeaders(headers)`, without encoding them. */
export function storedHeadersBytes(headers: StoredHeaders): number {
  let n = 0;
  for (const [name, value] of Object.entries(headers)) n += 2 + name.length + value.length;
  return n;
}
