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
  // `bytes=5-2` is invalid: ignored per RFC 9110. Compared as digits: positions past 2^53 are not exact.
  if (last !== "" && compareDigits(last, first) < 0) return undefined;
  // A start past the end, however many digits it has, is unsatisfiable (a start past 2^53 is past any file).
  const start = Number(first);
  if (start >= size) return "unsatisfiable";
  const end = last === "" ? size : Math.min(Number(last) + 1, size);
  return { start, end };
}

/** Compares two non-negative decimal numbers given as digits (leading zeros allowed): <0, 0 or >0. */
function compareDigits(a: string, b: string): number {
  const x = a.replace(/^0+(?=\d)/, "");
  const y = b.replace(/^0+(?=\d)/, "");
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** `Content-Range` of a 206 answer. */
export function contentRange(range: { start: number; end: number }, size: number): string {
  return `bytes ${range.start}-${range.end - 1}/${size}`;
}
