/**
 * The `Range` header of a GET (RFC 9110 §14), for one byte range. Pure: no I/O.
 *
 * - `undefined`: no usable range, answer the whole body with 200 (no header, another unit, a syntax error, or
 *   several ranges: a server may ignore a Range it does not want to serve, and multipart answers are not worth
 *   their cost for a blob store).
 * - `"unsatisfiable"`: answer 416 with `Content-Range: bytes *\/<size>`.
 * - `{ start, end }`: answer 206 with bytes `[start, end)`.
 */
export type RangeResult = undefined | "unsatisfiable" | { start: number; end: number };

const SPEC = /^bytes=(\d*)-(\d*)$/;

export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return undefined;
  const m = SPEC.exec(header.trim());
  if (!m) return undefined;
  const [, first = "", last = ""] = m;
  if (first === "" && last === "") return undefined;
  if (first === "") {
    // Suffix range: the last N bytes.
    const n = Number(last);
    if (n === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size };
  }
  const start = Number(first);
  const end = last === "" ? size : Number(last) + 1;
  if (!Number.isSafeInteger(start) || !Number.isFinite(end)) return undefined;
  if (last !== "" && end <= start) return undefined; // `bytes=5-2` is invalid: ignored per RFC 9110.
  if (start >= size) return "unsatisfiable";
  return { start, end: Math.min(end, size) };
}

/** `Content-Range` of a 206 answer. */
export function contentRange(range: { start: number; end: number }, size: number): string {
  return `bytes ${range.start}-${range.end - 1}/${size}`;
}
