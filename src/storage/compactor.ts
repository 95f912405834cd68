import { randomInt } from "node:crypto";
import { rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { checksum } from "../common/checksum.js";
import type { Logger } from "../common/logger.js";
import { fsyncDir, writeFully } from "./file-io.js";
import type { IndexTable } from "./index-table.js";
import {
  decodeRecordHeader,
  recordLength,
  recordValid,
  sealRecordHead,
  VOLUME_HEADER_BYTES,
} from "./record.js";
import { Volume } from "./volume.js";
import { scanVolume, type ScannedRecord } from "./volume-scan.js";
import type { Writer } from "./writer.js";
import type { MaintenanceTurnWait } from "./types.js";

export interface CompactionHost {
  readonly options: { compactGarbageRatio: number; log: Logger; turn: MaintenanceTurnWait };
  readonly index: IndexTable;
  readonly volumes: Map<number, Volume>;
  readonly active: Volume;
  checkpoint(): Promise<void>;
}

/** Records up to this size are copied with one read; larger ones in chunks. */
const WHOLE_RECORD_BYTES = 16 << 20;
const COPY_CHUNK = 4 << 20;
const FLUSH_BYTES = 8 << 20;
const RETRY_DELAY_MS = 10_000;

/** Thrown inside a copy to give up on a volume without failing the store. */
class Abandon extends Error {}

/**
 * Rewrites sealed volumes whose garbage passes the threshold, online and crash-safe:
 * 1. choose the volume between two write batches (every record of every sealed volume is indexed then) and
 *    note the active volume id A;
 * 2. copy the records the index points at (objects, and deletes within their grace period), and the expired
 *    tombstones still needed, in file order to
 *    `<volume>.compact` with a new salt and `compactedAt = A`; fsync it;
 * 3. between two batches: rename it over the volume, fsync the folder, repoint the entries that still point
 *    at the copied records (a record overwritten or deleted meanwhile stays superseded: its newer record is in
 *    a later volume, which wins at replay); retire the old file once its readers are done; then checkpoint.
 * A crash before the rename leaves the old volume (the `.compact` file is removed at start); after it, the
 * new one, complete. A rewritten volume keeps its id, so replay order (volume id, then offset) still says which
 * record of a key is newest.
 *
 * A tombstone is kept while it is current (its grace period, during which the node refuses anything older than
 * the delete). After that, a tombstone in volume V may only be dropped when no older volume can still hold its
 * key: when every volume below V was itself compacted after V was sealed (its `compactedAt` > V).
 */
export class Compactor {
  completed = 0;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Ends a wait for the node's turn when the store closes. */
  private readonly closing = new AbortController();
  /** After a failure (a full disk, say) background compaction waits before trying again, ms since the epoch. */
  private retryAfter = 0;

  constructor(
    private readonly host: CompactionHost,
    private readonly writer: Writer,
  ) {}

  /** Starts a background compaction if a volume needs one and none is running. */
  poke(): void {
    if (this.running || this.stopped || Date.now() < this.retryAfter) return;
    if (this.candidates().length === 0) return;
    void this.start();
  }

  /** Compacts every volume past the threshold now (waiting for a running compaction first). */
  async run(): Promise<void> {
    while (this.running) await this.running;
    if (this.stopped) return;
    await this.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.closing.abort();
    while (this.running) await this.running;
  }

  private start(): Promise<void> {
    this.running = this.loop()
      .catch((err: unknown) => {
        this.retryAfter = Date.now() + RETRY_DELAY_MS;
        this.host.options.log.error({ err }, "compaction failed; it will be retried");
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private candidates(): Volume[] {
    const activeId = this.host.active.id;
    const ratio = this.host.options.compactGarbageRatio;
    return [...this.host.volumes.values()]
      .filter((v) => v.id < activeId && !v.keepAsIs && v.garbageBytes > 0)
      .filter((v) => v.garbageBytes >= ratio * (v.size - VOLUME_HEADER_BYTES))
      .sort((a, b) => a.id - b.id);
  }

  /** One pass over the volumes that need compaction now (later garbage is for the next pass). */
  private async loop(): Promise<void> {
    const ids = await this.writer.exclusive(async () => this.candidates().map((v) => v.id));
    for (const id of ids) {
      if (this.stopped) return;
      const pick = await this.writer.exclusive(async () => {
        const v = this.candidates().find((c) => c.id === id);
        return v && { volume: v, activeId: this.host.active.id };
      });
      if (pick) await this.compactVolume(pick.volume, pick.activeId);
    }
  }

  /** Waits for the node's turn at background work (one node of a shard at a time); gives up at close. */
  private async turn(): Promise<void> {
    await this.host.options.turn(this.closing.signal).catch(() => undefined);
    if (this.stopped) throw new Abandon("store closing");
  }

  private async compactVolume(old: Volume, activeId: number): Promise<void> {
    const { index, volumes, options } = this.host;
    const log = options.log;
    const started = performance.now();
    const tombstonesDroppable = [...volumes.values()].every(
      (w) => w.id >= old.id || w.header.compactedAt > old.id,
    );
    const tmpPath = `${old.path}.compact`;
    await rm(tmpPath, { force: true });
    const out = await Volume.create(
      dirname(old.path),
      { id: old.id, salt: randomInt(0xffffffff), compactedAt: activeId },
      tmpPath,
    );
    // Entry number, old offset, new offset of every record copied because the index pointed at it.
    const moves: number[] = [];
    let pinned = 0;
    let pos = out.size;
    let pending: Buffer[] = [];
    let pendingAt = pos;
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pending.length > 0) await writeFully(out.file.handle, pending, pendingAt);
      pending = [];
      pendingAt = pos;
      pendingBytes = 0;
    };
    const copy = async (r: ScannedRecord): Promise<void> => {
      if (this.stopped) throw new Abandon("store closing");
      const k = Buffer.from(r.key); // the scan's view is only valid until the first await
      const i = index.find(k);
      // A record the index points at is current (an object, or a delete within its grace period); a tombstone
      // past its grace period (no entry left) is kept while an older volume may still hold its key.
      const current = i >= 0 && index.volumeOf(i) === old.id && index.offsetOf(i) === r.offset;
      if (!current && !(r.header.tombstone && i < 0 && !tombstonesDroppable)) return;
      const newOffset = pos;
      if (r.header.length <= WHOLE_RECORD_BYTES) {
        // The scan's bytes when it has them (copied now: they are only valid until the first await).
        const rec = r.bytes ? Buffer.from(r.bytes) : await old.file.readAt(r.offset, r.header.length);
        const head = rec.subarray(0, r.header.headBytes);
        if (
          !recordValid(
            head,
            r.header,
            checksum(rec.subarray(r.header.headBytes, r.header.headBytes + r.header.size)),
          )
        ) {
          throw new Abandon(`live record at ${r.offset} is damaged`);
        }
        sealRecordHead(head, out.salt);
        pending.push(rec);
        pos += rec.length;
        pendingBytes += rec.length;
      } else {
        await flush();
        await this.copyLarge(old, r, out, pos);
        pos += r.header.length;
        pendingAt = pos;
      }
      if (current) moves.push(i, r.offset, newOffset);
      else pinned += r.header.length;
      if (pendingBytes >= FLUSH_BYTES) {
        await flush();
        await this.turn();
      }
    };
    try {
      await this.turn();
      // Headers only: garbage is not checksummed, and every record kept is verified by `copy`.
      const scan = await scanVolume(old.file.handle, old.salt, VOLUME_HEADER_BYTES, old.size, copy, {
        verifyBodies: false,
      });
      if (scan.skipped.length > 0 || scan.truncateAt !== undefined)
        throw new Abandon("damaged bytes in the volume");
      await flush();
      await out.file.handle.datasync();
    } catch (err) {
      await out.file.close();
      await rm(tmpPath, { force: true });
      if (!(err instanceof Abandon)) throw err;
      if (!this.stopped) {
        old.keepAsIs = true;
        log.error({ volume: old.id, reason: err.message }, "volume left uncompacted");
      }
      return;
    }
    out.size = pos;
    const reclaimed = old.size - pos;
    await this.writer.exclusive(async () => {
      const empty = pos === VOLUME_HEADER_BYTES;
      try {
        // A volume left with no record at all is removed: it holds nothing that replay or a tombstone needs.
        if (empty) {
          await rm(old.path);
          await rm(tmpPath);
        } else {
          await rename(tmpPath, old.path);
        }
        await fsyncDir(dirname(old.path));
      } catch (err) {
        await out.file.close();
        await rm(tmpPath, { force: true });
        throw err;
      }
      if (empty) {
        volumes.delete(old.id);
        old.file.retire();
        void out.file.close();
        return;
      }
      const replacement = new Volume(out.header, old.path, out.file, out.size);
      replacement.pinnedBytes = pinned;
      for (let m = 0; m < moves.length; m += 3) {
        const i = moves[m]!;
        if (index.volumeOf(i) !== old.id || index.offsetOf(i) !== moves[m + 1]) continue;
        index.move(i, old.id, moves[m + 2]!);
        replacement.liveBytes += recordLengthAt(index, i);
      }
      volumes.set(old.id, replacement);
      old.file.retire();
    });
    this.completed++;
    log.info({ volume: old.id, reclaimed, ms: Math.round(performance.now() - started) }, "volume compacted");
    await this.host.checkpoint();
  }

  private async copyLarge(old: Volume, r: ScannedRecord, out: Volume, at: number): Promise<void> {
    const head = await old.file.readAt(r.offset, r.header.headBytes);
    const h = decodeRecordHeader(head);
    let crc = 0;
    for (let done = 0; done < r.header.size;) {
      const step = Math.min(COPY_CHUNK, r.header.size - done);
      const chunk = await old.file.readAt(r.offset + r.header.headBytes + done, step);
      crc = checksum(chunk, crc);
      await writeFully(out.file.handle, [chunk], at + r.header.headBytes + done);
      done += step;
    }
    if (!h || !recordValid(head, h, crc)) throw new Abandon(`live record at ${r.offset} is damaged`);
    sealRecordHead(head, out.salt);
    const padding = Buffer.alloc(r.header.length - r.header.headBytes - r.header.size);
    await writeFully(out.file.handle, [head], at);
    await writeFully(out.file.handle, [padding], at + r.header.headBytes + r.header.size);
  }
}

function recordLengthAt(index: IndexTable, i: number): number {
  return recordLength(index.keyBytesOf(i), index.metaBytesOf(i), index.sizeOf(i));
}
