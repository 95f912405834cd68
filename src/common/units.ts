import { BackpackError } from "./errors.js";

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
  tib: 1024 ** 4,
  p: 1024 ** 5,
  pb: 1024 ** 5,
  pib: 1024 ** 5,
};

/**
 * Parses a size such as `100gb`, `1.5tb`, `512mb`, `64KiB` or plain bytes (`1048576`) into a whole, positive
 * number of bytes. Units are binary (1 kb = 1024 bytes), as the original's `100gb` capacities were.
 * Refuses `100 gigs`, `-1`, `0` (unless `allowZero`: a size where 0 turns something off), fractions of a byte
 * and anything past 2^53.
 */
export function parseBytes(text: string, what = "size", allowZero = false): number {
  const m = /^(\d+(?:\.\d+)?)([a-z]*)$/i.exec(text.trim());
  const unit = m?.[2]?.toLowerCase() ?? "";
  const factor = BYTE_UNITS[unit];
  if (!m || factor === undefined) {
    throw new BackpackError(
      "INVALID_ARGUMENT",
      `${what} "${text}" is not a size: use bytes or a number with a unit, e.g. 512mb, 100gb, 1.5tb`,
    );
  }
  const bytes = Number(m[1]) * factor;
  if (
    !Number.isSafeInteger(Math.round(bytes)) ||
    Math.round(bytes) !== bytes ||
    bytes < (allowZero ? 0 : 1)
  ) {
    throw new BackpackError(
      "INVALID_ARGUMENT",
      `${what} "${text}" must be a whole number of bytes${allowZero ? "" : " greater than 0"} (e.g. 512mb, 100gb, 1.5tb)`,
    );
  }
  return bytes;
}

/** `107374182400` → `100gb`; short and exact where possible, else one decimal (`1.5tb`). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ["b", "kb", "mb", "gb", "tb", "pb"];
  let value = bytes;
  let i = 0;
  while (Math.abs(value) >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  const text = Number.isInteger(value)
    ? String(value)
    : value.toFixed(value < 10 ? 2 : 1).replace(/\.?0+$/, "");
  return `${text}${units[i]}`;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `250ms`, `5s`, `2m`, `1h` or plain milliseconds into milliseconds (≥ 0). */
export function parseDuration(text: string, what = "duration"): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) {
    throw new BackpackError(
      "INVALID_ARGUMENT",
      `${what} "${text}" is not a duration: use e.g. 500ms, 5s, 2m`,
    );
  }
  return Math.round(Number(m[1]) * (DURATION_UNITS[m[2] ?? "ms"] ?? 1));
}

/** A duration in ms as the largest whole units that fit: `3d 4h`, `2h 10m`, `45s`, `120ms`. */
export function formatDuration(ms: number): string {
  const parts: string[] = [];
  let rest = Math.max(0, Math.round(ms));
  for (const [unit, size] of [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.length > 0 ? parts.join(" ") : `${rest}ms`;
}
