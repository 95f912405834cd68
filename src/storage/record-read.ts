import { checksum } from "../common/checksum.js";
import { BackpackError } from "../common/errors.js";
import { decodeRecordHeader, headerCrcValid, RECORD_HEADER_BYTES, recordValid } from "./record.js";
import type { VolumeFile } from "./volume.js";

/** Where the index says a record is, and what it says the record holds. */
export interface RecordLocation {
  file: VolumeFile;
  salt: number;
  offset: number;
  key: Buffer;
  metaBytes: number;
  size: number;
  bodyCrc: number;
}

const STREAM_CHUNK = 1 << 20;

function mismatch(what: string): BackpackError {
  return new BackpackError("CHECKSUM_MISMATCH", `stored record failed verification (${what})`);
}

/** Checks a record's head (header, key, meta) against the index: lengths, key, CRCs. */
function checkHead(head: Buffer, loc: RecordLocation): ReturnType<typeof decodeRecordHeader> {
  const h = decodeRecordHeader(head);
  if (!h || h.tombstone) throw mismatch("bad header");
  if (h.keyBytes !== loc.key.length || h.size !== loc.size || h.bodyCrc !== loc.bodyCrc) {
    throw mismatch("header does not match the index");
  }
  if (h.metaBytes !== loc.metaBytes || !headerCrcValid(head, h, loc.salt)) {
    throw mismatch("header checksum");
  }
  if (!loc.key.equals(head.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + h.keyBytes))) {
    throw mismatch("key does not match the index");
  }
  return h;
}

/** Bodies up to this size are read with a synchronous positioned read (see `VolumeFile.readAtSync`). */
export const SYNC_READ_MAX_BYTES = 64 << 10;

/**
 * Reads a whole record with one positioned read and verifies it before returning any of its bytes; returns
 * the body's `[start, end)`.
 */
export async function readVerified(loc: RecordLocation, start: number, end: number): Promise<Buffer> {
  const headBytes = RECORD_HEADER_BYTES + loc.key.length + loc.metaBytes;
  return verified(await loc.file.readAt(loc.offset, headBytes + loc.size), headBytes, loc, start, end);
}

/** `readVerified` with a synchronous read, for records of at most SYNC_READ_MAX_BYTES of body. */
export function readVerifiedSync(loc: RecordLocation, start: number, end: number): Buffer {
  const headBytes = RECORD_HEADER_BYTES + loc.key.length + loc.metaBytes;
  return verified(loc.file.readAtSync(loc.offset, headBytes + loc.size), headBytes, loc, start, end);
}

function verified(buf: Buffer, headBytes: number, loc: RecordLocation, start: number, end: number): Buffer {
  const h = checkHead(buf.subarray(0, headBytes), loc)!;
  const body = buf.subarray(headBytes);
  if (!recordValid(buf, h, checksum(body))) throw mismatch("record checksum");
  return body.subarray(start, end);
}

/**
 * Streams a large record's body `[start, end)`. The head is verified before the first byte. A whole-body
 * stream is verified as it goes and throws CHECKSUM_MISMATCH after the last chunk if the record is bad (a
 * proxy then sees a broken transfer, never a complete wrong file). A partial range of a large record is not
 * covered by a record checksum that spans the whole body: it is served with only its head verified.
 * `onMismatch` is called once before the stream fails; `release` (of the file, acquired by the caller when
 * the read began) once the stream ends.
 */
export async function* streamRecord(
  loc: RecordLocation,
  start: number,
  end: number,
  onMismatch: (err: BackpackError) => void,
  release: () => void,
): AsyncGenerator<Buffer> {
  const headBytes = RECORD_HEADER_BYTES + loc.key.length + loc.metaBytes;
  const whole = start === 0 && end === loc.size;
  try {
    const head = await loc.file.handle.read(Buffer.allocUnsafe(headBytes), 0, headBytes, loc.offset);
    let h: ReturnType<typeof decodeRecordHeader>;
    try {
      if (head.bytesRead !== headBytes) throw mismatch("record is cut short");
      h = checkHead(head.buffer, loc);
    } catch (err) {
      if (err instanceof BackpackError) onMismatch(err);
      throw err;
    }
    let crc = 0;
    let pos = start;
    while (pos < end) {
      const want = Math.min(STREAM_CHUNK, end - pos);
      const chunk = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const r = await loc.file.handle.read(chunk, got, want - got, loc.offset + headBytes + pos + got);
        if (r.bytesRead === 0) break;
        got += r.bytesRead;
      }
      if (got < want) {
        const err = mismatch("record is cut short");
        onMismatch(err);
        throw err;
      }
      if (whole) crc = checksum(chunk, crc);
      pos += want;
      if (whole && pos === end && !recordValid(head.buffer, h!, crc)) {
        const err = mismatch("record checksum");
        onMismatch(err);
        throw err;
      }
      yield chunk;
    }
    if (whole && loc.size === 0 && !recordValid(head.buffer, h!, 0)) throw mismatch("record checksum");
  } finally {
    release();
  }
}
