import { checksum } from "../common/checksum.js";
import { MAX_STORED_HEADER_BYTES } from "../common/stored-headers.js";
import { legacyVersion, type Version } from "../common/version.js";

/**
 * The on-disk formats of a volume: a 32-byte volume header, then records back to back, each padded to 8
 * bytes. Pure encoding and decoding, no I/O. All integers little-endian; 64-bit lengths are split into two
 * u32 halves (values stay below 2^53, JavaScript's exact integer range).
 *
 * Record = header (40 bytes) ‖ key (UTF-8) ‖ meta ‖ body ‖ zero padding to 8 bytes, where meta is the content
 * type (UTF-8) and, in format 3, the stored headers after it (common/stored-headers.ts: each `\n` ‖ name ‖
 * `:` ‖ value; the content type holds no newline, so it ends at the first one).
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 4 | magic `0x314B5042` ("BPK1") |
 * | 4 | 4 | header CRC-32 of bytes 8-39, key and meta, seeded with the volume's salt |
 * | 8 | 4 | record CRC-32 of body ‖ bytes 12-39 ‖ key ‖ meta |
 * | 12 | 1 | record format: 3 with stored headers, else 2 (records of format 1 are still read) |
 * | 13 | 1 | flags: bit 0 = tombstone |
 * | 14 | 2 | key length (1-1024) |
 * | 16 | 8 | body length |
 * | 24 | 8 | version stamp, µs since the epoch (format 1: write time in ms) |
 * | 32 | 4 | body CRC-32 (the object's checksum: ETag, wire header, queue tasks) |
 * | 36 | 2 | meta length (format 2: the content type alone, 0-1024; format 3: up to 1024 + 8192) |
 * | 38 | 2 | version origin (format 1: reserved, zero) |
 *
 * A format-1 record (written before versions existed) has the version `legacyVersion(writeTime)`: its write
 * time in µs, origin 0, older than any version stamped since.
 *
 * The record CRC covers header, key and body; computing it as a continuation of the body CRC means one pass
 * over the body yields both. The header CRC (which also covers the record CRC) lets a scan trust a record's
 * lengths before reading its body, and its per-volume salt keeps records of any other volume file (one
 * stored as an object, stale blocks of a removed volume) from ever being taken for this volume's own. Both
 * CRCs sit at the front so that each is one call over contiguous bytes.
 */
export const RECORD_MAGIC = 0x314b5042;
export const VOLUME_MAGIC = 0x4c565042;
/** The volume header's format, and the record format written now. */
export const FORMAT_VERSION = 1;
export const RECORD_FORMAT = 2;
/** A record with stored headers: its meta holds them after the content type. */
export const HEADERS_RECORD_FORMAT = 3;
const LEGACY_RECORD_FORMAT = 1;
export const RECORD_HEADER_BYTES = 40;
export const VOLUME_HEADER_BYTES = 32;
export const FLAG_TOMBSTONE = 1;
export const MAX_KEY_BYTES = 1024;
export const MAX_CONTENT_TYPE_BYTES = 1024;
/** Meta of a format-3 record: a content type and the stored headers. */
export const MAX_META_BYTES = MAX_CONTENT_TYPE_BYTES + MAX_STORED_HEADER_BYTES;
/** Bodies are limited to 2^53 - 1 bytes by JavaScript numbers, far past any disk. */
const TWO_32 = 0x1_0000_0000;

export interface RecordMeta {
  key: Buffer;
  contentType: Buffer;
  /** The stored headers, encoded (common/stored-headers.ts); empty for none. */
  headers: Buffer;
  size: number;
  version: Version;
  bodyCrc: number;
  tombstone: boolean;
}

/** Bytes a record takes in its volume, padding included. */
export function recordLength(keyBytes: number, metaBytes: number, size: number): number {
  return pad8(RECORD_HEADER_BYTES + keyBytes + metaBytes + size);
}

export function pad8(n: number): number {
  return Math.ceil(n / 8) * 8;
}

/** Header ‖ key ‖ meta, with both CRCs filled in (the body's CRC is already known). */
export function encodeRecordHead(meta: RecordMeta, salt: number): Buffer {
  const k = meta.key.length;
  const c = meta.contentType.length + meta.headers.length;
  const head = Buffer.allocUnsafe(RECORD_HEADER_BYTES + k + c);
  head.writeUInt32LE(RECORD_MAGIC, 0);
  head.writeUInt8(meta.headers.length > 0 ? HEADERS_RECORD_FORMAT : RECORD_FORMAT, 12);
  head.writeUInt8(meta.tombstone ? FLAG_TOMBSTONE : 0, 13);
  head.writeUInt16LE(k, 14);
  writeU64(head, meta.size, 16);
  writeU64(head, meta.version.stamp, 24);
  head.writeUInt32LE(meta.bodyCrc >>> 0, 32);
  head.writeUInt16LE(c, 36);
  head.writeUInt16LE(meta.version.origin, 38);
  meta.key.copy(head, RECORD_HEADER_BYTES);
  meta.contentType.copy(head, RECORD_HEADER_BYTES + k);
  meta.headers.copy(head, RECORD_HEADER_BYTES + k + meta.contentType.length);
  sealRecordHead(head, salt);
  return head;
}

/** (Re)computes both CRCs of an encoded head for a volume's salt (compaction moves records between salts). */
export function sealRecordHead(head: Buffer, salt: number): void {
  head.writeUInt32LE(recordCrcOf(head, head.readUInt32LE(32)), 8);
  head.writeUInt32LE(checksum(head.subarray(8), salt), 4);
}

/** The record CRC of an encoded head (exactly header ‖ key ‖ meta) given the body's CRC. */
export function recordCrcOf(head: Buffer, bodyCrc: number): number {
  return checksum(head.subarray(12), bodyCrc);
}

export interface DecodedHeader {
  tombstone: boolean;
  keyBytes: number;
  /** Length of the meta: the content type, and the stored headers when `hasHeaders`. */
  metaBytes: number;
  /** Format 3: the meta holds stored headers after the content type. */
  hasHeaders: boolean;
  size: number;
  version: Version;
  bodyCrc: number;
  headerCrc: number;
  recordCrc: number;
  /** Head length: header + key + meta; the body starts here. */
  headBytes: number;
  /** The whole record with padding. */
  length: number;
}

/**
 * Decodes the fixed 40-byte header at `buf[at..]`, checking everything that can be checked without the key:
 * returns undefined for anything that cannot be a record header (the caller treats that as damage).
 */
export function decodeRecordHeader(buf: Buffer, at = 0): DecodedHeader | undefined {
  if (buf.length - at < RECORD_HEADER_BYTES) return undefined;
  if (buf.readUInt32LE(at) !== RECORD_MAGIC) return undefined;
  const format = buf.readUInt8(at + 12);
  if (format !== RECORD_FORMAT && format !== HEADERS_RECORD_FORMAT && format !== LEGACY_RECORD_FORMAT) {
    return undefined;
  }
  const hasHeaders = format === HEADERS_RECORD_FORMAT;
  const flags = buf.readUInt8(at + 13);
  if ((flags & ~FLAG_TOMBSTONE) !== 0) return undefined;
  const keyBytes = buf.readUInt16LE(at + 14);
  const size = readU64(buf, at + 16);
  const stamp = readU64(buf, at + 24);
  const bodyCrc = buf.readUInt32LE(at + 32);
  const metaBytes = buf.readUInt16LE(at + 36);
  const origin = buf.readUInt16LE(at + 38);
  if (format === LEGACY_RECORD_FORMAT && origin !== 0) return undefined;
  if (keyBytes < 1 || keyBytes > MAX_KEY_BYTES) return undefined;
  if (metaBytes > (hasHeaders ? MAX_META_BYTES : MAX_CONTENT_TYPE_BYTES)) return undefined;
  if (size === undefined || stamp === undefined) return undefined;
  const tombstone = (flags & FLAG_TOMBSTONE) !== 0;
  if (tombstone && (size !== 0 || bodyCrc !== 0 || metaBytes !== 0)) return undefined;
  const headBytes = RECORD_HEADER_BYTES + keyBytes + metaBytes;
  return {
    tombstone,
    keyBytes,
    metaBytes,
    hasHeaders,
    size,
    version: format === LEGACY_RECORD_FORMAT ? legacyVersion(stamp) : { stamp, origin },
    bodyCrc,
    headerCrc: buf.readUInt32LE(at + 4),
    recordCrc: buf.readUInt32LE(at + 8),
    headBytes,
    length: pad8(headBytes + size),
  };
}

/** True when the head (header ‖ key ‖ meta, exactly `headBytes` long) carries a valid header CRC. */
export function headerCrcValid(head: Buffer, h: DecodedHeader, salt: number): boolean {
  return checksum(head.subarray(8, h.headBytes), salt) === h.headerCrc;
}

/** True when the whole record verifies, given the body's computed CRC. */
export function recordValid(head: Buffer, h: DecodedHeader, computedBodyCrc: number): boolean {
  return (
    computedBodyCrc === h.bodyCrc && checksum(head.subarray(12, h.headBytes), computedBodyCrc) === h.recordCrc
  );
}

/** A record's meta split into its content type and its encoded stored headers. */
export function splitMeta(meta: Buffer, hasHeaders: boolean): { contentType: Buffer; headers: Buffer } {
  const nl = hasHeaders ? meta.indexOf(0x0a) : -1;
  return nl < 0
    ? { contentType: meta, headers: meta.subarray(meta.length) }
    : { contentType: meta.subarray(0, nl), headers: meta.subarray(nl) };
}

export interface VolumeHeader {
  id: number;
  salt: number;
  /** 0 for a volume written by appends; for a compacted one, the active volume id when its compaction began. */
  compactedAt: number;
}

export function encodeVolumeHeader(v: VolumeHeader): Buffer {
  const b = Buffer.alloc(VOLUME_HEADER_BYTES);
  b.writeUInt32LE(VOLUME_MAGIC, 0);
  b.writeUInt16LE(FORMAT_VERSION, 4);
  b.writeUInt32LE(v.id, 8);
  b.writeUInt32LE(v.salt >>> 0, 12);
  b.writeUInt32LE(v.compactedAt, 16);
  b.writeUInt32LE(checksum(b.subarray(0, 28)), 28);
  return b;
}

export function decodeVolumeHeader(b: Buffer): VolumeHeader | undefined {
  if (b.length < VOLUME_HEADER_BYTES) return undefined;
  if (b.readUInt32LE(0) !== VOLUME_MAGIC || b.readUInt16LE(4) !== FORMAT_VERSION) return undefined;
  if (checksum(b.subarray(0, 28)) !== b.readUInt32LE(28)) return undefined;
  return { id: b.readUInt32LE(8), salt: b.readUInt32LE(12), compactedAt: b.readUInt32LE(16) };
}

function writeU64(buf: Buffer, n: number, at: number): void {
  buf.writeUInt32LE(n % TWO_32, at);
  buf.writeUInt32LE(Math.floor(n / TWO_32), at + 4);
}

function readU64(buf: Buffer, at: number): number | undefined {
  const hi = buf.readUInt32LE(at + 4);
  if (hi >= 0x20_0000) return undefined; // past 2^53: not a length or time this store ever writes
  return hi * TWO_32 + buf.readUInt32LE(at);
}
