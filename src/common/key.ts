import { BackpackError } from "./errors.js";

export const MAX_KEY_BYTES = 1024;

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Turns a request target (`/dir/file.jpg?v=2`) into a stored key (`dir/file.jpg`): the path without the
 * leading `/`, percent-decoded, without the query string. Throws INVALID_KEY for an empty key, a key over
 * 1024 bytes of UTF-8, `.`/`..` segments, NUL or control characters, and invalid UTF-8.
 */
export function keyFromTarget(target: string): string {
  const q = target.indexOf("?");
  const path = q === -1 ? target : target.slice(0, q);
  if (!path.startsWith("/")) throw new BackpackError("INVALID_KEY", "key must be the path after a leading /");
  return decodeKey(path.slice(1));
}

/**
 * Percent-decodes a raw path and validates the result. Node hands over a request target with one char per
 * byte (latin1); chars above 0xff (a string that was already decoded) are taken as their UTF-8 bytes.
 */
export function decodeKey(raw: string): string {
  return validateKey(percentDecode(raw));
}

/** Percent-decodes a raw path as strict UTF-8 (INVALID_KEY for a malformed escape or invalid UTF-8). */
function percentDecode(raw: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 /* % */) {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
        throw new BackpackError("INVALID_KEY", "key has a malformed percent-escape");
      }
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (c > 0xff) {
      const cp = raw.codePointAt(i) ?? c;
      if (cp > 0xffff) i++;
      bytes.push(...Buffer.from(String.fromCodePoint(cp), "utf8"));
    } else {
      bytes.push(c);
    }
  }
  try {
    return strictUtf8.decode(Uint8Array.from(bytes));
  } catch {
    throw new BackpackError("INVALID_KEY", "key is not valid UTF-8");
  }
}

/** Checks a decoded key against the rules above and returns it. */
export function validateKey(key: string): string {
  if (key.length === 0) throw new BackpackError("INVALID_KEY", "key is empty");
  if (Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES) {
    throw new BackpackError("INVALID_KEY", `key is longer than ${MAX_KEY_BYTES} bytes of UTF-8`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) {
    throw new BackpackError("INVALID_KEY", "key contains NUL or control characters");
  }
  if (!isWellFormed(key)) throw new BackpackError("INVALID_KEY", "key is not valid UTF-8");
  for (const segment of key.split("/")) {
    if (segment === "." || segment === "..") {
      throw new BackpackError("INVALID_KEY", "key has a . or .. segment");
    }
  }
  return key;
}

function isWellFormed(s: string): boolean {
  // Lone surrogates cannot be encoded as UTF-8.
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

/** Encodes a key as a request path (`/` kept, everything else that needs it percent-encoded). */
export function keyToPath(key: string): string {
  return "/" + key.split("/").map(encodeURIComponent).join("/");
}

/**
 * The coordinator's read form `/<shard>:<key>` of a request target: percent-decoded as a whole, split at the
 * first `:`, and the key checked on its own, so that a key of up to MAX_KEY_BYTES is readable and deletable
 * whatever the length of its shard id. (`parseShardKey(keyFromTarget(target))` checked the length of
 * `<shard>:<key>` as a whole: a stored key of 1023-1024 bytes could not be read or deleted.)
 */
export function shardKeyFromTarget(target: string): { shardId: string; key: string } {
  const q = target.indexOf("?");
  const path = q === -1 ? target : target.slice(0, q);
  if (!path.startsWith("/")) throw new BackpackError("INVALID_KEY", "key must be the path after a leading /");
  return parseShardKey(percentDecode(path.slice(1)));
}

/** Splits the coordinator's read form `<shard>:<key>` at the first colon. */
export function parseShardKey(text: string): { shardId: string; key: string } {
  const i = text.indexOf(":");
  if (i <= 0) {
    throw new BackpackError("INVALID_KEY", `"${text}" is not of the form <shard>:<key>`);
  }
  return { shardId: text.slice(0, i), key: validateKey(text.slice(i + 1)) };
}

/**
 * Orders keys by the bytes of their UTF-8 (what a node's key order and `GET /_list` use), without encoding
 * them: UTF-16 order is code point order, and so UTF-8 byte order, except that a surrogate (half of a code
 * point past U+FFFF) sorts after every other unit.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    return xs === ys ? x - y : xs ? 1 : -1;
  }
  return a.length - b.length;
}
