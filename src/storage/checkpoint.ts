import { open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { checksum } from "../common/checksum.js";
import type { Logger } from "../common/logger.js";
import { fsyncDir, writeFully } from "./file-io.js";
import { ContentTypes } from "./content-types.js";
import { CHUNK_BYTES } from "./key-arena.js";
import { IndexTable, newPage, PAGE_COLUMNS, PAGE_ENTRIES, type Page } from "./index-table.js";
import type { SyncMode } from "./types.js";
import type { Volume } from "./volume.js";

/**
 * The index checkpoint: the index's typed arrays written raw, so that loading it is a read and a few copies
 * rather than a rescan. It records, per volume, the salt and the length up to which the index is complete;
 * recovery scans only what follows. Written atomically (temp file, fsync, rename, fsync of the folder).
 *
 * File: magic u32 ‖ version u32 ‖ descriptor length u32 ‖ descriptor (JSON) ‖ zero padding to 8 ‖ hash slots
 * (i32 each) ‖ per entry page, each column in PAGE_COLUMNS order ‖ key arena chunks (the last one cut at its
 * fill) ‖ CRC-32 of everything before it (u32).
 */
const MAGIC = 0x50435042;
/** 2: entries carry a version and tombstones (a checkpoint of version 1 is ignored: the volumes are rescanned). */
const VERSION = 2;
export const CHECKPOINT_FILE = "index.ckpt";

export interface CoveredVolume {
  id: number;
  salt: number;
  /** The index holds every record of the volume before this offset. */
  covered: number;
}

interface Descriptor {
  seed: number;
  count: number;
  tombstones: number;
  highWater: number;
  freeHead: number;
  slotCount: number;
  pageCount: number;
  arenaChunks: number;
  arenaFill: number;
  arenaLive: number;
  arenaGarbage: number;
  types: string[];
  overflow: [number, string][];
  volumes: CoveredVolume[];
}

export interface CheckpointSource {
  readonly options: { dir: string; sync: SyncMode; log: Logger };
  readonly index: IndexTable;
  readonly volumes: Map<number, Volume>;
}

/**
 * Writes a checkpoint of the index as it is now. The snapshot is taken synchronously (the index and the
 * volumes' durable lengths change together, in one synchronous step of the writer), so it is consistent
 * without stopping writes; the file is written afterwards.
 */
export async function writeCheckpoint(src: CheckpointSource): Promise<void> {
  const { index } = src;
  const volumes = [...src.volumes.values()].sort((a, b) => a.id - b.id);
  const desc: Descriptor = {
    seed: index.seed,
    count: index.count,
    tombstones: index.tombstones,
    highWater: index.highWater,
    freeHead: index.freeHead,
    slotCount: index.slots.length,
    pageCount: index.pages.length,
    arenaChunks: index.arena.chunks.length,
    arenaFill: index.arena.fill,
    arenaLive: index.arena.live,
    arenaGarbage: index.arena.garbage,
    types: index.types.list(),
    overflow: [...index.types.overflow],
    volumes: volumes.map((v) => ({ id: v.id, salt: v.salt, covered: v.size })),
  };
  const parts: Uint8Array[] = [bytesOf(index.slots.slice())];
  for (const page of index.pages) for (const col of PAGE_COLUMNS) parts.push(bytesOf(page[col].slice()));
  // Chunks are append-only and compaction of the arena makes new ones, so the filled ones can be shared.
  index.arena.chunks.forEach((c, n) =>
    parts.push(n === index.arena.chunks.length - 1 ? c.slice(0, index.arena.fill) : c),
  );
  const json = Buffer.from(JSON.stringify(desc), "utf8");
  const head = Buffer.alloc(Math.ceil((12 + json.length) / 8) * 8);
  head.writeUInt32LE(MAGIC, 0);
  head.writeUInt32LE(VERSION, 4);
  head.writeUInt32LE(json.length, 8);
  json.copy(head, 12);
  parts.unshift(head);
  let crc = 0;
  for (const p of parts) crc = checksum(p, crc);
  const trailer = Buffer.alloc(4);
  trailer.writeUInt32LE(crc, 0);
  parts.push(trailer);

  if (src.options.sync === "none") {
    // The checkpoint must never point past bytes that are on the disk.
    for (const v of volumes) await v.file.handle.datasync();
  }
  const path = join(src.options.dir, CHECKPOINT_FILE);
  const tmp = `${path}.tmp`;
  const handle = await open(tmp, "w");
  try {
    await writeFully(handle, parts, 0);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
  await fsyncDir(src.options.dir);
}

/** Loads the checkpoint if there is a valid one; a missing, torn or foreign file means a full scan. */
export async function readCheckpoint(
  dir: string,
  log: Logger,
): Promise<{ index: IndexTable; volumes: CoveredVolume[] } | undefined> {
  const path = join(dir, CHECKPOINT_FILE);
  await rm(`${path}.tmp`, { force: true });
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch {
    return undefined;
  }
  try {
    if (buf.length < 16 || buf.readUInt32LE(0) !== MAGIC) throw new Error("bad magic");
    if (buf.readUInt32LE(4) !== VERSION) throw new Error(`format ${buf.readUInt32LE(4)} is not ${VERSION}`);
    if (checksum(buf.subarray(0, buf.length - 4)) !== buf.readUInt32LE(buf.length - 4))
      throw new Error("bad checksum");
    const jsonLength = buf.readUInt32LE(8);
    const d = JSON.parse(buf.subarray(12, 12 + jsonLength).toString("utf8")) as Descriptor;
    let at = Math.ceil((12 + jsonLength) / 8) * 8;
    const take = (n: number): Buffer => {
      if (at + n > buf.length - 4) throw new Error("truncated");
      const b = buf.subarray(at, at + n);
      at += n;
      return b;
    };
    const index = new IndexTable(d.seed);
    const slots = new Int32Array(d.slotCount);
    bytesOf(slots).set(take(slots.byteLength));
    index.adoptSlots(slots);
    for (let p = 0; p < d.pageCount; p++) {
      const page: Page = newPage();
      for (const col of PAGE_COLUMNS) {
        const arr = page[col];
        bytesOf(arr).set(take(arr.byteLength));
      }
      index.pages.push(page);
    }
    for (let c = 0; c < d.arenaChunks; c++) {
      const chunk = new Uint8Array(CHUNK_BYTES);
      chunk.set(take(c === d.arenaChunks - 1 ? d.arenaFill : CHUNK_BYTES));
      index.arena.chunks.push(chunk);
    }
    if (at !== buf.length - 4 || d.pageCount * PAGE_ENTRIES < d.highWater)
      throw new Error("inconsistent sizes");
    index.arena.fill = d.arenaChunks === 0 ? CHUNK_BYTES : d.arenaFill;
    index.arena.live = d.arenaLive;
    index.arena.garbage = d.arenaGarbage;
    index.count = d.count;
    index.tombstones = d.tombstones;
    index.highWater = d.highWater;
    index.freeHead = d.freeHead;
    index.types = new ContentTypes(d.types);
    for (const [entry, type] of d.overflow) index.types.overflow.set(entry, type);
    return { index, volumes: d.volumes };
  } catch (err) {
    log.warn({ err, path }, "index checkpoint unusable; rebuilding the index from the volumes");
    return undefined;
  }
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
