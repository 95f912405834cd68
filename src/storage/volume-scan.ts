import type { FileHandle } from "node:fs/promises";
import { checksum } from "../common/checksum.js";
import { headRepairCandidates } from "./head-repair.js";
import {
  decodeRecordHeader,
  headerCrcValid,
  MAX_KEY_BYTES,
  MAX_META_BYTES,
  RECORD_HEADER_BYTES,
  RECORD_MAGIC,
  recordValid,
  type DecodedHeader,
} from "./record.js";

const WINDOW_BYTES = 4 << 20;
/** The longest head a record can have: header, key, meta. */
const MAX_HEAD_BYTES = RECORD_HEADER_BYTES + MAX_KEY_BYTES + MAX_META_BYTES;

/**
 * A record found by a scan. `intact` is false for a damaged record: its body does not verify, or its head
 * did not until one damaged byte was set right.
 * `key`, `meta` (content type and stored headers: see record.ts) and `bytes` may be views into the scan's buffer: valid until the callback returns or
 * awaits.
 */
export interface ScannedRecord {
  offset: number;
  header: DecodedHeader;
  key: Buffer;
  meta: Buffer;
  intact: boolean;
  /** The whole record as read by the scan, when it lay in one window (as verified as `intact` says). */
  bytes?: Buffer;
}

export interface ScanResult {
  /** Where the valid records end: the new append position when `truncateAt` is set. */
  end: number;
  /** Set when the bytes from here on are a torn or damaged tail that no valid record follows. */
  truncateAt?: number;
  /** Damaged regions skipped in the middle of the volume (valid records follow them). */
  skipped: { from: number; to: number }[];
}

/**
 * Reads a volume sequentially from `from` and reports every record in file order. Damage is handled so that
 * nothing acknowledged is dropped and nothing unverified is trusted:
 * - a record whose header verifies but whose body does not is reported (not intact) when valid records follow
 *   it (bit rot: it must still supersede older versions of its key), and is a torn tail otherwise;
 * - a record whose head has one damaged byte (both CRCs verify once it is set right: head-repair.ts) is
 *   reported, not intact, with its head set right;
 * - bytes that are not a verifiable header are skipped up to the next record that fully verifies (a torn
 *   batch whose later pages reached the disk); with no such record after them they are a torn tail.
 */
export async function scanVolume(
  handle: FileHandle,
  salt: number,
  from: number,
  size: number,
  onRecord: (r: ScannedRecord) => void | Promise<void>,
  /**
   * `verifyBodies: false` checks headers only: every record with a valid header is reported intact and its
   * body is neither read nor checksummed (for a caller that verifies the records it uses itself).
   */
  options: { verifyBodies?: boolean } = {},
): Promise<ScanResult> {
  const reader = new WindowReader(handle, size, options.verifyBodies ?? true);
  const skipped: ScanResult["skipped"] = [];
  let pos = from;
  while (pos < size) {
    // Fast path, no promise per record: a record that lies whole in the window and verifies.
    const quick = reader.validInWindow(pos, salt);
    if (quick) {
      const done = onRecord({ offset: pos, ...quick, intact: true });
      if (done) await done;
      pos += quick.header.length;
      continue;
    }
    const r = await reader.recordAt(pos, salt);
    if (r.kind === "valid") {
      await onRecord({ offset: pos, header: r.header, key: r.key, meta: r.meta, intact: true });
      pos += r.header.length;
      continue;
    }
    if (r.kind === "body-damaged") {
      const next = await reader.nextValid(pos + r.header.length, salt);
      if (next === undefined) return { end: pos, truncateAt: pos, skipped };
      await onRecord({
        offset: pos,
        header: r.header,
        key: r.key,
        meta: r.meta,
        intact: false,
      });
      pos += r.header.length;
      continue;
    }
    const repaired = await reader.repairedAt(pos, salt);
    if (repaired) {
      // Both CRCs verify once one damaged byte of the head is set right: the record is whole, its key and
      // version known, and it is reported damaged (its bytes on disk are still wrong).
      await onRecord({ offset: pos, ...repaired, intact: false });
      pos += repaired.header.length;
      continue;
    }
    const next = await reader.nextValid(pos + 8, salt);
    if (next === undefined) return { end: pos, truncateAt: pos, skipped };
    skipped.push({ from: pos, to: next });
    pos = next;
  }
  return { end: pos, skipped };
}

type Probe =
  { kind: "valid" | "body-damaged"; header: DecodedHeader; key: Buffer; meta: Buffer } | { kind: "bad" };

class WindowReader {
  private buf = Buffer.allocUnsafe(WINDOW_BYTES);
  private at = 0;
  private len = 0;

  constructor(
    private readonly handle: FileHandle,
    private readonly size: number,
    private readonly verifyBodies: boolean,
  ) {}

  /** `n` bytes at `pos` (a view valid until the next call), or undefined past the end of the file. */
  async get(pos: number, n: number): Promise<Buffer | undefined> {
    if (pos + n > this.size) return undefined;
    if (pos < this.at || pos + n > this.at + this.len) {
      const want = Math.min(Math.max(n, WINDOW_BYTES), this.size - pos);
      if (want > this.buf.length) this.buf = Buffer.allocUnsafe(want);
      let done = 0;
      while (done < want) {
        const { bytesRead } = await this.handle.read(this.buf, done, want - done, pos + done);
        if (bytesRead === 0) return undefined;
        done += bytesRead;
      }
      this.at = pos;
      this.len = want;
    }
    return this.buf.subarray(pos - this.at, pos - this.at + n);
  }

  /**
   * The record at `pos` when it lies in the current window (its head, for a scan that does not verify
   * bodies) and verifies; undefined otherwise (the caller then takes the general path). Key, content type
   * and the whole record's bytes (when they lie in the window) are views into the window.
   */
  validInWindow(
    pos: number,
    salt: number,
  ): Pick<ScannedRecord, "header" | "key" | "meta" | "bytes"> | undefined {
    const rel = pos - this.at;
    if (rel < 0 || rel + RECORD_HEADER_BYTES > this.len) return undefined;
    const header = decodeRecordHeader(this.buf, rel);
    if (!header || pos + header.length > this.size) return undefined;
    if (rel + (this.verifyBodies ? header.length : header.headBytes) > this.len) return undefined;
    const head = this.buf.subarray(rel, rel + header.headBytes);
    if (!headerCrcValid(head, header, salt)) return undefined;
    const bodyAt = rel + header.headBytes;
    if (
      this.verifyBodies &&
      !recordValid(head, header, checksum(this.buf.subarray(bodyAt, bodyAt + header.size)))
    )
      return undefined;
    const record: Pick<ScannedRecord, "header" | "key" | "meta" | "bytes"> = {
      header,
      key: head.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + header.keyBytes),
      meta: head.subarray(RECORD_HEADER_BYTES + header.keyBytes),
    };
    if (rel + header.length <= this.len) record.bytes = this.buf.subarray(rel, rel + header.length);
    return record;
  }

  async crcOf(pos: number, n: number): Promise<number> {
    let crc = 0;
    for (let done = 0; done < n;) {
      const step = Math.min(WINDOW_BYTES, n - done);
      const chunk = await this.get(pos + done, step);
      if (!chunk) throw new Error("volume shrank during a scan");
      crc = checksum(chunk, crc);
      done += step;
    }
    return crc;
  }

  async recordAt(pos: number, salt: number): Promise<Probe> {
    const fixed = await this.get(pos, RECORD_HEADER_BYTES);
    const header = fixed && decodeRecordHeader(fixed);
    if (!header || pos + header.length > this.size) return { kind: "bad" };
    const view = await this.get(pos, header.headBytes);
    if (!view || !headerCrcValid(view, header, salt)) return { kind: "bad" };
    const head = Buffer.from(view);
    const key = head.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + header.keyBytes);
    const meta = head.subarray(RECORD_HEADER_BYTES + header.keyBytes, header.headBytes);
    if (!this.verifyBodies) return { kind: "valid", header, key, meta };
    const bodyCrc = await this.crcOf(pos + header.headBytes, header.size);
    const kind = recordValid(head, header, bodyCrc) ? "valid" : "body-damaged";
    return { kind, header, key, meta };
  }

  /**
   * The record at `pos` with its head set right, when its head has one damaged byte and the whole record
   * verifies once that byte is fixed (the body is read and checksummed even when bodies are not verified).
   */
  async repairedAt(
    pos: number,
    salt: number,
  ): Promise<Pick<ScannedRecord, "header" | "key" | "meta"> | undefined> {
    const view = await this.get(pos, Math.min(MAX_HEAD_BYTES, this.size - pos));
    if (!view) return undefined;
    for (const head of headRepairCandidates(Buffer.from(view), salt)) {
      const header = decodeRecordHeader(head)!;
      if (pos + header.length > this.size) continue;
      if (!recordValid(head, header, await this.crcOf(pos + header.headBytes, header.size))) continue;
      return {
        header,
        key: head.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + header.keyBytes),
        meta: head.subarray(RECORD_HEADER_BYTES + header.keyBytes),
      };
    }
    return undefined;
  }

  /** The offset of the first fully valid record at or after `from` (8-byte aligned), if any. */
  async nextValid(from: number, salt: number): Promise<number | undefined> {
    for (let pos = from; pos + RECORD_HEADER_BYTES <= this.size; pos += 8) {
      const magic = await this.get(pos, 4);
      if (!magic || magic.readUInt32LE(0) !== RECORD_MAGIC) continue;
      if ((await this.recordAt(pos, salt)).kind === "valid") return pos;
    }
    return undefined;
  }
}
