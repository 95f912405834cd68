/**
 * Conditional GET/HEAD (RFC 9110 §13): decides between 304 Not Modified and a full answer. Pure: no I/O.
 */
export interface Validators {
  /** Strong ETag, quoted. */
  etag: string;
  /** Write time in ms since the epoch (HTTP dates have whole seconds). */
  modifiedMs: number;
}

export interface ConditionalHeaders {
  ifNoneMatch: string | undefined;
  ifModifiedSince: string | undefined;
}

export function isNotModified(h: ConditionalHeaders, v: Validators): boolean {
  if (h.ifNoneMatch !== undefined) {
    // If-None-Match takes precedence; If-Modified-Since is then ignored (RFC 9110 §13.1.3).
    return etagListMatches(h.ifNoneMatch, v.etag);
  }
  if (h.ifModifiedSince !== undefined) {
    const since = Date.parse(h.ifModifiedSince);
    if (Number.isNaN(since)) return false;
    return Math.floor(v.modifiedMs / 1000) * 1000 <= since;
  }
  return false;
}

/** Weak comparison of a `*` or comma-separated ETag list against one ETag (as If-None-Match wants). */
export function etagListMatches(list: string, etag: string): boolean {
  const wanted = opaque(etag);
  for (const raw of list.split(",")) {
    const item = raw.trim();
    if (item === "*") return true;
    if (opaque(item) === wanted) return true;
  }
  return false;
}

/** `If-Range`: the range applies only when the validator still names this version. */
export function ifRangeHolds(ifRange: string | undefined, v: Validators): boolean {
  if (ifRange === undefined) return true;
  const text = ifRange.trim();
  if (text.startsWith('"')) return text === v.etag; // strong comparison required here
  if (text.startsWith("W/")) return false;
  const date = Date.parse(text);
  return !Number.isNaN(date) && Math.floor(v.modifiedMs / 1000) * 1000 <= date;
}

function opaque(tag: string): string {
  return tag.startsWith("W/") ? tag.slice(2) : tag;
}

/** Conditional PUT/DELETE headers (RFC 9110 §13.2.2 order: If-Unmodified-Since, then If-None-Match). */
export interface WriteConditions {
  ifNoneMatch: string | undefined;
  ifUnmodifiedSince: string | undefined;
}

/**
 * Whether a write must be refused with 412. `current` is the stored version (undefined when absent);
 * `deletedMs` is when the key was deleted, if this node remembers it: a delete counts as a modification, so
 * a copy queued before a delete cannot bring the file back.
 */
export function writePreconditionFails(
  h: WriteConditions,
  current: Validators | undefined,
  deletedMs: number | undefined,
): boolean {
  if (h.ifUnmodifiedSince !== undefined) {
    const since = Date.parse(h.ifUnmodifiedSince);
    const changed = current?.modifiedMs ?? deletedMs;
    if (!Number.isNaN(since) && changed !== undefined && Math.floor(changed / 1000) * 1000 > since) {
      return true;
    }
  }
  if (h.ifNoneMatch !== undefined && current !== undefined)
    return etagListMatches(h.ifNoneMatch, current.etag);
  return false;
}
