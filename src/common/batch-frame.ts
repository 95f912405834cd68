import { BackpackError } from "./errors.js";
import { checksum } from "./checksum.js";
import { MAX_KEY_BYTES } from "./key.js";
import type { Version } from "./version.js";
import {
  decodeStoredHeaders,
  encodeStoredHeaders,
  MAX_STORED_HEADER_BYTES,
  type StoredHeaders,
} from "./stored-headers.js";

/**
 * The body of `POST /_backpack/batch` on a storage node: several small writes in one request, committed by the
 * node's group commit together and answered one by one (docs/http-api.md, "Batched writes"). Little-endian:
 *
 *     frame   = "BPB1" | count u32 | record × count          (nothing after the last record)
 *     record  = header (28 bytes) | key | content type | stored headers | body
 *     header  = headerCrc u32      CRC-32 of the 24 header bytes after it, the key, the content type and the
 *                                  stored headers
 *               keyLength u16      1-1024 bytes of UTF-8
 *               typeLength u8      0-255 bytes (0: none)
 *               flags u8           bit 0: the record carries a version; other bits 0
 *               bodyLength u32
 *               bodyCrc u32        CRC-32 of the body: a body that does not match is refused (that record only)
 *               stamp u64          the version's stamp (µs, below 2^53); 0 without a version
 *               origin u16         the version's origin; 0 without a version
 *               headersLength u16  0-8192: the stored headers, encoded as in a record (stored-headers.ts)
 *
 * Everything that says where the next record starts is covered by a header CRC, so a frame that is cut short,
 * damaged in a header, or holds more records than it says is refused as a whole (`BAD_FRAME`, nothing stored);
 * a damaged body fails its own record only.
 */
export const BATCH_MAGIC = Buffer.from("BPB1", "latin1");
/** Where a storage node takes batches. */
export const BATCH_PATH = "/_backpack/batch";
export const BATCH_HEAD_BYTES = 8;
export const BATCH_RECORD_HEADER_BYTES = 28;
/** Records in one frame at most (a larger count is refused before anything is read). */
export const MAX_BATCH_RECORDS = 1024;
export const BATCH_CONTENT_TYPE = "application/vnd.backpack.batch";

const FLAG_VERSION = 1;
/** What a u8 length holds; storage nodes take content types of up to 255 bytes anyway. */
const MAX_TYPE_BYTES = 255;
const TWO_32 = 2 ** 32;
const EMPTY = Buffer.alloc(0);

/** One write of a frame. */
export interface BatchRecord {
  key: string;
  /** Undefined when the record carries none. */
  contentType: string | undefined;
  body: Buffer;
  /** CRC-32 of the body, as the sender computed it. */
  bodyCrc: number;
  version: Version | undefined;
  /** The file's stored headers (Cache-Control, Content-*, Expires, X-Backpack-Meta-*), if any. */
  headers?: StoredHeaders | undefined;
}

/** The encoded size of one record (for a sender that bounds its frames). */
export function batchRecordBytes(keyBytes: number, typeBytes: number, bodyBytes: number): number {
  return BATCH_RECORD_HEADER_BYTES + keyBytes + typeBytes + bodyBytes;
}

/** Encodes records as one frame (a single buffer: one write on the socket). */
export function encodeBatch(records: readonly BatchRecord[]): Buffer {
  if (records.length > MAX_BATCH_RECORDS) {
    throw new BackpackError("INTERNAL", `a batch holds at most ${MAX_BATCH_RECORDS} records`);
  }
  const keys = records.map((r) => Buffer.from(r.key, "utf8"));
  const types = records.map((r) => Buffer.from(r.contentType ?? "", "utf8"));
  const stored = records.map((r) => (r.headers ? encodeStoredHeaders(r.headers) : EMPTY));
  let total = BATCH_HEAD_BYTES;
  for (let i = 0; i < records.length; i++) {
    total += batchRecordBytes(keys[i]!.length, types[i]!.length + stored[i]!.length, records[i]!.body.length);
  }
  const out = Buffer.allocUnsafe(total);
  BATCH_MAGIC.copy(out, 0);
  out.writeUInt32LE(records.length, 4);
  let at = BATCH_HEAD_BYTES;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    const key = keys[i]!;
    const type = types[i]!;
    const headers = stored[i]!;
    if (
      key.length === 0 ||
      key.length > MAX_KEY_BYTES ||
      type.length > MAX_TYPE_BYTES ||
      headers.length > MAX_STORED_HEADER_BYTES
    ) {
      throw new BackpackError(
        "INVALID_ARGUMENT",
        "a batch record's key, content type or stored headers are out of bounds",
      );
    }
    const h = at;
    out.writeUInt16LE(key.length, h + 4);
    out.writeUInt8(type.length, h + 6);
    out.writeUInt8(r.version ? FLAG_VERSION : 0, h + 7);
    out.writeUInt32LE(r.body.length, h + 8);
    out.writeUInt32LE(r.bodyCrc >>> 0, h + 12);
    const stamp = r.version?.stamp ?? 0;
    out.writeUInt32LE(stamp % TWO_32, h + 16);
    out.writeUInt32LE(Math.floor(stamp / TWO_32), h + 20);
    out.writeUInt16LE(r.version?.origin ?? 0, h + 24);
    out.writeUInt16LE(headers.length, h + 26);
    at = h + BATCH_RECORD_HEADER_BYTES;
    key.copy(out, at);
    at += key.length;
    type.copy(out, at);
    at += type.length;
    headers.copy(out, at);
    at += headers.length;
    out.writeUInt32LE(checksum(out.subarray(h + 4, at)), h);
    r.body.copy(out, at);
    at += r.body.length;
  }
  return out;
}

/**
 * Decodes a whole frame. Throws BAD_FRAME (naming what and where) for anything that breaks the framing; the
 * records' bodies are views into `frame` (not copied), and their keys are only decoded (strict UTF-8), not
 * checked against the key rules: that, and the body against its CRC, is each record's own affair.
 */
export function decodeBatch(frame: Buffer, limits: { maxBodyBytes: number }): BatchRecord[] {
  if (frame.length < BATCH_HEAD_BYTES || !frame.subarray(0, 4).equals(BATCH_MAGIC)) {
    throw badFrame("the body does not start with the batch magic BPB1");
  }
  const count = frame.readUInt32LE(4);
  if (count > MAX_BATCH_RECORDS) {
    throw badFrame(`the frame says ${count} records; at most ${MAX_BATCH_RECORDS} are taken`);
  }
  // Every record takes at least its header: a count the bytes cannot hold is refused before any is read.
  if (count * BATCH_RECORD_HEADER_BYTES > frame.length - BATCH_HEAD_BYTES) {
    throw badFrame(`the frame says ${count} records but holds ${frame.length} bytes`);
  }
  const records: BatchRecord[] = [];
  let at = BATCH_HEAD_BYTES;
  for (let i = 0; i < count; i++) {
    if (frame.length - at < BATCH_RECORD_HEADER_BYTES) throw badFrame(`record ${i} is cut short`, i);
    const keyLength = frame.readUInt16LE(at + 4);
    const typeLength = frame.readUInt8(at + 6);
    const flags = frame.readUInt8(at + 7);
    const bodyLength = frame.readUInt32LE(at + 8);
    const headersLength = frame.readUInt16LE(at + 26);
    const meta = at + BATCH_RECORD_HEADER_BYTES;
    const headersAt = meta + keyLength + typeLength;
    const bodyAt = headersAt + headersLength;
    if (bodyAt > frame.length) throw badFrame(`record ${i} is cut short`, i);
    if (frame.readUInt32LE(at) !== checksum(frame.subarray(at + 4, bodyAt))) {
      throw badFrame(`record ${i}'s header fails its checksum`, i);
    }
    if (keyLength === 0 || keyLength > MAX_KEY_BYTES)
      throw badFrame(`record ${i}'s key length is out of bounds`, i);
    if ((flags & ~FLAG_VERSION) !== 0) {
      throw badFrame(`record ${i} has flags this node does not know`, i);
    }
    if (headersLength > MAX_STORED_HEADER_BYTES) {
      throw badFrame(`record ${i}'s stored headers are longer than ${MAX_STORED_HEADER_BYTES} bytes`, i);
    }
    if (bodyLength > limits.maxBodyBytes)
      throw badFrame(`record ${i}'s body is larger than the node takes`, i);
    if (bodyAt + bodyLength > frame.length) throw badFrame(`record ${i} is cut short`, i);
    const stamp = frame.readUInt32LE(at + 20) * TWO_32 + frame.readUInt32LE(at + 16);
    if (!Number.isSafeInteger(stamp)) throw badFrame(`record ${i}'s version is out of range`, i);
    let key: string;
    let type: string;
    try {
      key = strictUtf8.decode(frame.subarray(meta, meta + keyLength));
      type = strictUtf8.decode(frame.subarray(meta + keyLength, headersAt));
    } catch {
      throw badFrame(`record ${i}'s key or content type is not UTF-8`, i);
    }
    records.push({
      key,
      contentType: typeLength > 0 ? type : undefined,
      body: frame.subarray(bodyAt, bodyAt + bodyLength),
      bodyCrc: frame.readUInt32LE(at + 12),
      version: flags & FLAG_VERSION ? { stamp, origin: frame.readUInt16LE(at + 24) } : undefined,
      headers: decodeStoredHeaders(frame.subarray(headersAt, bodyAt)),
    });
    at = bodyAt + bodyLength;
  }
  if (at !== frame.length) throw badFrame(`${frame.length - at} bytes follow the last record`);
  return records;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function badFrame(what: string, record?: number): BackpackError {
  return new BackpackError("BAD_FRAME", `batch refused, nothing stored: ${what}`, {
    details: record === undefined ? {} : { record },
  });
}
