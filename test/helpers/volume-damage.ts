import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { compareVersions, formatVersion, type Version } from "../../src/common/version.js";
import { decodeRecordHeader, RECORD_HEADER_BYTES, VOLUME_HEADER_BYTES } from "../../src/storage/record.js";
import { flipByte } from "../storage/helpers.js";

/**
 * Bit rot for tests: flips one byte of a stored record in a node's volume files (`<data dir>/volumes/NNNNNNNN.vol`,
 * format in docs/storage.md), as a disk that returns wrong data would: in the middle of a body
 * (`flipStoredByte`), or in a record's key (`flipKeyByte`). The node must not be running. `flipStoredByte` takes
 * only a current record (its key's newest version on this node, the one the node serves) and never the last
 * record of a file: recovery may take a damaged last record for a torn write and cut it off, which is another
 * fault than a damaged record in the middle of a volume.
 */

export interface FlippedByte {
  file: string;
  /** Byte offset of the flipped byte in the file. */
  offset: number;
  key: string;
  version: string;
  size: number;
}

interface Candidate {
  file: string;
  volume: number;
  recordAt: number;
  bodyAt: number;
  key: string;
  version: Version;
  size: number;
  tombstone: boolean;
  last: boolean;
}

/** Every record of every volume file in `dataDir`, in write order (volume id, then offset). */
async function scanRecords(dataDir: string): Promise<Candidate[]> {
  const dir = join(dataDir, "volumes");
  const names = (await readdir(dir)).filter((n) => /^\d{8}\.vol$/.test(n)).sort();
  const out: Candidate[] = [];
  for (const name of names) {
    const file = join(dir, name);
    const fh = await open(file, "r");
    try {
      const { size: fileSize } = await fh.stat();
      const head = Buffer.alloc(RECORD_HEADER_BYTES);
      for (let at = VOLUME_HEADER_BYTES; at + RECORD_HEADER_BYTES <= fileSize;) {
        await fh.read(head, 0, RECORD_HEADER_BYTES, at);
        const h = decodeRecordHeader(head);
        // Records are back to back in a volume written by a live process; anything else ends the walk.
        if (h === undefined || at + h.length > fileSize) break;
        const key = Buffer.alloc(h.keyBytes);
        await fh.read(key, 0, h.keyBytes, at + RECORD_HEADER_BYTES);
        out.push({
          file,
          volume: Number(name.slice(0, 8)),
          recordAt: at,
          bodyAt: at + h.headBytes,
          key: key.toString("utf8"),
          version: h.version,
          size: h.size,
          tombstone: h.tombstone,
          last: at + h.length >= fileSize,
        });
        at += h.length;
      }
    } finally {
      await fh.close();
    }
  }
  return out;
}

/** The current record of each key (the newest version; of equal versions the later record, as replay does). */
function currentRecords(records: readonly Candidate[]): Map<string, Candidate> {
  const current = new Map<string, Candidate>();
  for (const r of records) {
    const held = current.get(r.key);
    if (!held || compareVersions(r.version, held.version) >= 0) current.set(r.key, r);
  }
  return current;
}

/**
 * Flips the first byte of `key` in the head of its current record (a file or a tombstone): damage the header CRC
 * catches, so the record can no longer be trusted even to say which key it is. Resolves with where, or undefined
 * when the node holds no record of `key`.
 */
export async function flipKeyByte(dataDir: string, key: string): Promise<FlippedByte | undefined> {
  const chosen = currentRecords(await scanRecords(dataDir)).get(key);
  if (!chosen) return undefined;
  const offset = chosen.recordAt + RECORD_HEADER_BYTES;
  await flipByte(chosen.file, offset);
  return { file: chosen.file, offset, key, version: formatVersion(chosen.version), size: chosen.size };
}

/**
 * Flips a byte in the middle of the body of a random current record (not a tombstone, not a file's last record);
 * resolves with where, or undefined when no record qualifies.
 */
export async function flipStoredByte(
  dataDir: string,
  random: () => number,
): Promise<FlippedByte | undefined> {
  const current = currentRecords(await scanRecords(dataDir));
  const candidates = [...current.values()].filter((r) => !r.tombstone && r.size >= 2 && !r.last);
  candidates.sort((a, b) => a.volume - b.volume || a.recordAt - b.recordAt);
  const chosen = candidates[Math.floor(random() * candidates.length)];
  if (!chosen) return undefined;
  const offset = chosen.bodyAt + Math.floor(chosen.size / 2);
  await flipByte(chosen.file, offset);
  return {
    file: chosen.file,
    offset,
    key: chosen.key,
    version: formatVersion(chosen.version),
    size: chosen.size,
  };
}
