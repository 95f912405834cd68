import { crc32 } from "node:zlib";

/** CRC-32 (IEEE) as used in every stored record; `zlib.crc32` is native in Node ≥ 20.15. */
export function checksum(data: Uint8Array, previous = 0): number {
  return crc32(data, previous);
}

/** The ETag a node answers for a record with this checksum and size (strong, quoted). */
export function etagOf(crc: number, size: number): string {
  return `"${crc.toString(16).padStart(8, "0")}-${size.toString(16)}"`;
}

/** The checksum as the 8-hex-digit text carried in headers and queue tasks. */
export function formatChecksum(crc: number): string {
  return crc.toString(16).padStart(8, "0");
}

export function parseChecksum(text: string): number | undefined {
  return /^[0-9a-f]{8}$/i.test(text) ? Number.parseInt(text, 16) >>> 0 : undefined;
}
