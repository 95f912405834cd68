import { keyFromTarget, MAX_KEY_BYTES } from "../common/key.js";

// Characters that decode to themselves and can break no key rule on their own: RFC 3986 unreserved,
// sub-delims, ":", "@" and "/". No "%" (escapes), "?" (query), "#", controls, spaces or non-ASCII.
const PLAIN = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/") {
  PLAIN[c.charCodeAt(0)] = 1;
}

/**
 * `keyFromTarget` with a fast path for the common target (`/dir/file-1.jpg`): one scan, no decoding, no
 * regular expressions. Anything unusual (escapes, a query, dot segments, non-ASCII, too long, empty) takes the
 * full path in `common/key.ts`, which decides and names the error; a test checks both agree.
 */
export function keyOfTarget(target: string): string {
  const n = target.length;
  if (n < 2 || n > MAX_KEY_BYTES + 1 || target.charCodeAt(0) !== 0x2f) return keyFromTarget(target);
  let segment = 1;
  for (let i = 1; i < n; i++) {
    const c = target.charCodeAt(i);
    if (c >= 128 || PLAIN[c] === 0) return keyFromTarget(target);
    if (c === 0x2f) {
      if (isDotSegment(target, segment, i)) return keyFromTarget(target);
      segment = i + 1;
    }
  }
  if (isDotSegment(target, segment, n)) return keyFromTarget(target);
  return target.slice(1);
}

function isDotSegment(s: string, from: number, to: number): boolean {
  const len = to - from;
  if (len === 1) return s.charCodeAt(from) === 0x2e;
  return len === 2 && s.charCodeAt(from) === 0x2e && s.charCodeAt(from + 1) === 0x2e;
}
