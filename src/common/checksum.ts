import { createRequire } from "node:module";
import { crc32 as zlibCrc32 } from "node:zlib";
import { BackpackError } from "./errors.js";

type Crc32 = (data: Uint8Array, previous: number) => number;

/**
 * The CRC-32 (IEEE) implementations: `zlib.crc32`, built into Node ≥ 20.15, and @node-rs/crc32 (SIMD), about
 * three times faster on 1 MiB (bench/README.md, "Checksum"). Both compute the same values; the faster one is
 * used when its prebuilt binary loads on this platform and passes a known answer, and BACKPACK_CRC32=zlib
 * forces zlib's.
 */
export const CRC32_IMPLEMENTATIONS: Readonly<{ zlib: Crc32; simd: Crc32 | undefined }> = Object.freeze({
  zlib: (data: Uint8Array, previous: number) => zlibCrc32(data, previous),
  simd: loadSimd(),
});

function loadSimd(): Crc32 | undefined {
  try {
    const m = createRequire(import.meta.url)("@node-rs/crc32") as {
      crc32(data: Uint8Array, initial?: number): number;
    };
    const fn: Crc32 = (data, previous) => m.crc32(data, previous);
    return fn(Buffer.from("123456789"), 0) === 0xcbf43926 ? fn : undefined;
  } catch {
    return undefined;
  }
}

/** Which implementation `checksum` uses. */
export const CRC32_IMPLEMENTATION: "zlib" | "simd" =
  process.env.BACKPACK_CRC32 !== "zlib" && CRC32_IMPLEMENTATIONS.simd ? "simd" : "zlib";

const crc32: Crc32 = CRC32_IMPLEMENTATIONS[CRC32_IMPLEMENTATION] ?? CRC32_IMPLEMENTATIONS.zlib;

/**
 * CRC-32 (IEEE) as used in every stored record; `previous` continues a checksum over more data. Empty data
 * leaves it as it is (`zlib.crc32` answers 0 for an empty buffer that has no memory behind it).
 */
export function checksum(data: Uint8Array, previous = 0): number {
  return data.length === 0 ? previous >>> 0 : crc32(data, previous);
}

/** The ETag a node answers for a record with this checksum and size (strong, quoted). */
export function etagOf(crc: number, size: number): string {
  return `"${formatChecksum(crc)}-${size.toString(16)}"`;
}

/** Two hex digits per byte value: formatting a checksum is on the path of every GET. */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** The checksum as the 8-hex-digit text carried in headers and queue tasks. */
export function formatChecksum(crc: number): string {
  return HEX[crc >>> 24]! + HEX[(crc >>> 16) & 255]! + HEX[(crc >>> 8) & 255]! + HEX[crc & 255]!;
}

export function parseChecksum(text: string): number | undefined {
  return /^[0-9a-f]{8}$/i.test(text) ? Number.parseInt(text, 16) >>> 0 : undefined;
}

/** The CRC-32 an upload declares in `X-Backpack-Checksum`, or undefined; a malformed one is refused (400). */
export function expectedChecksum(header: string | string[] | undefined): number | undefined {
  if (header === undefined) return undefined;
  const crc = typeof header === "string" ? parseChecksum(header) : undefined;
  if (crc === undefined) {
    throw new BackpackError(
      "BAD_CHECKSUM_HEADER",
      "X-Backpack-Checksum must be 8 hex digits (CRC-32 of the body)",
    );
  }
  return crc;
}
