import { checksum } from "../common/checksum.js";
import {
  decodeRecordHeader,
  headerCrcValid,
  RECORD_HEADER_BYTES,
  RECORD_MAGIC,
  type DecodedHeader,
} from "./record.js";

/**
 * Finding the one damaged byte of a record head (header ‖ key ‖ meta) whose header CRC fails: bit rot in a key
 * would otherwise make recovery skip the record, and its key fall back to an older version (or to the file a
 * damaged tombstone had deleted). A candidate is a copy of the head with one byte changed so that the header
 * CRC verifies; the caller keeps one only if the record CRC (over the body and every header byte) verifies
 * too, so a wrong guess needs two independent CRC-32s to agree by chance. Pure, no I/O.
 *
 * - A byte of the fixed 40-byte header (magic, CRCs, lengths, version): each of its 255 other values is tried
 *   (a length changes where the head ends, so each try is decoded and checked on its own).
 * - A byte of the key or meta: the CRC is linear, so the damage is the one byte `d` at the one position `p`
 *   whose contribution equals the syndrome (computed CRC XOR stored CRC): a pass over the positions, 256
 *   values each, instead of 255 CRCs of the whole head per position.
 */
export function headRepairCandidates(head: Buffer, salt: number): Buffer[] {
  if (head.length < RECORD_HEADER_BYTES) return [];
  const wrongMagic = magicBytesWrong(head);
  if (wrongMagic.length > 1) return [];
  if (wrongMagic.length === 1) {
    // The magic is covered by neither CRC: the damaged byte is there, and everything else must verify.
    const fixed = Buffer.from(head);
    fixed.writeUInt32LE(RECORD_MAGIC, 0);
    const h = decodeRecordHeader(fixed);
    return h && h.headBytes <= head.length && headerCrcValid(fixed, h, salt) ? [copyHead(fixed, h)] : [];
  }
  const found: Buffer[] = [];
  for (let p = 4; p < RECORD_HEADER_BYTES; p++) {
    const original = head[p]!;
    for (let v = 0; v < 256; v++) {
      if (v === original) continue;
      head[p] = v;
      const h = decodeRecordHeader(head);
      if (h && h.headBytes <= head.length && headerCrcValid(head, h, salt)) found.push(copyHead(head, h));
    }
    head[p] = original;
  }
  const h = decodeRecordHeader(head);
  if (h && h.headBytes > RECORD_HEADER_BYTES && h.headBytes <= head.length) {
    const syndrome = (checksum(head.subarray(8, h.headBytes), salt) ^ h.headerCrc) >>> 0;
    for (const [p, d] of singleByteErrors(syndrome, h.headBytes - 8)) {
      const at = 8 + p;
      if (at < RECORD_HEADER_BYTES) continue; // the fixed header was tried above
      const fixed = copyHead(head, h);
      fixed[at] = fixed[at]! ^ d;
      if (headerCrcValid(fixed, h, salt)) found.push(fixed);
    }
  }
  return found;
}

/** The positions of the magic's bytes that differ from a record's. */
function magicBytesWrong(head: Buffer): number[] {
  const wrong: number[] = [];
  for (let i = 0; i < 4; i++) if (head[i] !== ((RECORD_MAGIC >>> (8 * i)) & 0xff)) wrong.push(i);
  return wrong;
}

function copyHead(head: Buffer, h: DecodedHeader): Buffer {
  return Buffer.from(head.subarray(0, h.headBytes));
}

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * The (position, XOR) pairs of a message `length` bytes long such that flipping those bits changes its CRC-32
 * by `syndrome`. The change a byte `d` at position `p` makes is the CRC register after `d` followed by
 * `length - 1 - p` zero bytes, from a zero register: computed for every `d` at once, walking `p` backwards.
 */
function singleByteErrors(syndrome: number, length: number): [number, number][] {
  if (syndrome === 0) return [];
  const reg = new Uint32Array(TABLE);
  const out: [number, number][] = [];
  for (let p = length - 1; p >= 0; p--) {
    for (let d = 1; d < 256; d++) if (reg[d] === syndrome) out.push([p, d]);
    for (let d = 1; d < 256; d++) reg[d] = TABLE[reg[d]! & 0xff]! ^ (reg[d]! >>> 8);
  }
  return out;
}
