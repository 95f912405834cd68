import { channel } from "node:diagnostics_channel";
import type { FileHandle } from "node:fs/promises";
import { BackpackError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { diskError, writeFully } from "./file-io.js";
import type { IncomingBody } from "./incoming-body.js";
import { encodeRecordHead, recordLength, VOLUME_HEADER_BYTES, type RecordMeta } from "./record.js";
import type { SyncMode } from "./types.js";
import type { Volume } from "./volume.js";

/** A record waiting for the append. */
export interface QueuedRecord {
  meta: RecordMeta;
  body: IncomingBody | undefined;
  signal?: AbortSignal | undefined;
}

/** Where a record landed. */
export interface Placed {
  record: QueuedRecord;
  volume: Volume;
  offset: number;
  length: number;
}

export interface AppendTarget {
  active(): Volume;
  /** Seals the active volume and makes a new one active (created durably). */
  rollover(): Promise<Volume>;
}

interface RecordOp {
  kind: "record";
  record: QueuedRecord;
  resolve(p: Placed): void;
  reject(err: unknown): void;
}

interface ExclusiveOp {
  kind: "exclusive";
  run(): Promise<void>;
}

const ZEROS = Buffer.alloc(8);
/** Published after each durable batch with `{ records, bytes }`: lets tests and tools see group commit work. */
export const commitChannel = channel("backpack:storage:commit");
const FLUSH_BUFFERS = 1000;
const FLUSH_BYTES = 32 << 20;
const COPY_CHUNK = 1 << 20;

/**
 * The single writer of a store (group commit). Records queue while the previous batch is being written;
 * each turn takes every queued record, appends them at the tail with as few writev calls as possible, makes
 * them durable with one fdatasync per volume touched, then hands them to `onDurable` (the index update) and
 * resolves them all. Nothing is indexed or acknowledged before its bytes are durable (with `sync: "batch"`).
 *
 * `exclusive(fn)` runs `fn` between batches: it sees every acknowledged record indexed and no append in
 * flight (compaction uses it to choose volumes and to swap files).
 */
export class Writer {
  private queue: (RecordOp | ExclusiveOp)[] = [];
  private running: Promise<void> | undefined;
  /** Set when durability can no longer be promised (a failed fsync): every later write is refused. */
  private broken: unknown;

  constructor(
    private readonly options: {
      target: AppendTarget;
      sync: SyncMode;
      volumeMaxBytes: number;
      onDurable(placed: Placed[]): void;
      log: Logger;
    },
  ) {}

  append(record: QueuedRecord): Promise<Placed> {
    return new Promise((resolve, reject) => {
      this.queue.push({ kind: "record", record, resolve, reject });
      this.kick();
    });
  }

  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      this.queue.push({ kind: "exclusive", run: () => fn().then(resolve, reject) });
      this.kick();
    });
  }

  /** Resolves once everything queued so far is done. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private kick(): void {
    if (this.running) return;
    this.running = this.loop().finally(() => {
      this.running = undefined;
      if (this.queue.length > 0) this.kick();
    });
  }

  private async loop(): Promise<void> {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (head.kind === "exclusive") {
        this.queue.shift();
        await head.run();
        continue;
      }
      let n = 1;
      while (n < this.queue.length && this.queue[n]!.kind === "record") n++;
      await this.writeBatch(this.queue.splice(0, n) as RecordOp[]);
    }
  }

  private async writeBatch(ops: RecordOp[]): Promise<void> {
    const live: RecordOp[] = [];
    for (const op of ops) {
      if (this.broken !== undefined) {
        op.reject(
          new BackpackError("UNAVAILABLE", "the store can no longer write durably; restart the node", {
            cause: this.broken,
          }),
        );
      } else if (op.record.signal?.aborted) {
        op.reject(new BackpackError("CLIENT_ABORTED", "the upload was aborted"));
      } else {
        live.push(op);
      }
    }
    if (live.length === 0) return;
    const starts = new Map<Volume, number>();
    const ends = new Map<Volume, number>();
    const placed: Placed[] = [];
    let syncing = false;
    try {
      const { target, volumeMaxBytes } = this.options;
      let vol = target.active();
      let pos = vol.size;
      starts.set(vol, pos);
      let iov: Buffer[] = [];
      let iovAt = pos;
      let iovBytes = 0;
      const push = (b: Buffer): void => {
        iov.push(b);
        pos += b.length;
        iovBytes += b.length;
      };
      const flush = async (): Promise<void> => {
        if (iov.length > 0) await writeFully(vol.file.handle, iov, iovAt);
        iov = [];
        iovAt = pos;
        iovBytes = 0;
      };
      for (const op of live) {
        const { meta, body } = op.record;
        const length = recordLength(meta.key.length, meta.contentType.length, meta.size);
        if (pos > VOLUME_HEADER_BYTES && pos + length > volumeMaxBytes) {
          await flush();
          ends.set(vol, pos);
          vol = await target.rollover();
          pos = iovAt = vol.size;
          starts.set(vol, pos);
        }
        const offset = pos;
        push(encodeRecordHead(meta, vol.salt));
        if (body?.kind === "buffer" && body.size > 0) push(body.data);
        if (body?.kind === "spool") {
          await flush();
          await copyInto(body.handle, body.size, vol.file.handle, pos);
          pos += body.size;
          iovAt = pos;
        }
        const padding = offset + length - pos;
        if (padding > 0) push(ZEROS.subarray(0, padding));
        placed.push({ record: op.record, volume: vol, offset, length });
        if (iov.length >= FLUSH_BUFFERS || iovBytes >= FLUSH_BYTES) await flush();
      }
      await flush();
      ends.set(vol, pos);
      if (this.options.sync !== "none") {
        syncing = true;
        for (const v of ends.keys()) await v.file.handle.datasync();
      }
    } catch (err) {
      await this.undo(starts, err, syncing);
      const e = diskError(err);
      for (const op of live) op.reject(e);
      return;
    }
    for (const [v, end] of ends) v.size = end;
    if (commitChannel.hasSubscribers) {
      commitChannel.publish({ records: placed.length, bytes: placed.reduce((n, p) => n + p.length, 0) });
    }
    try {
      this.options.onDurable(placed);
    } catch (err) {
      // The records are durable but the index could not take them: stop writing rather than diverge.
      this.broken = err;
      this.options.log.error({ err }, "index update failed; the store refuses writes until restarted");
      for (const op of live) op.reject(err);
      return;
    }
    for (let i = 0; i < live.length; i++) live[i]!.resolve(placed[i]!);
  }

  /** Cuts a failed batch's partial bytes off so the next batch appends at a clean tail. */
  private async undo(starts: Map<Volume, number>, err: unknown, afterSync: boolean): Promise<void> {
    if (afterSync) {
      // After a failed fsync the kernel may have dropped the dirty pages: the file's state is unknown.
      this.broken = err;
      this.options.log.error({ err }, "fsync failed; the store refuses writes until restarted");
      return;
    }
    for (const [v, start] of starts) {
      try {
        await v.file.handle.truncate(start);
      } catch (truncErr) {
        this.broken = truncErr;
        this.options.log.error({ err: truncErr }, "could not cut a failed append; the store refuses writes");
      }
    }
    this.options.log.warn({ err }, "append failed; the batch was rejected");
  }
}

async function copyInto(from: FileHandle, size: number, to: FileHandle, position: number): Promise<void> {
  const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, Math.max(size, 1)));
  let done = 0;
  while (done < size) {
    const { bytesRead } = await from.read(buf, 0, Math.min(buf.length, size - done), done);
    if (bytesRead === 0) throw new BackpackError("INTERNAL", "a spooled body ended early");
    await writeFully(to, [buf.subarray(0, bytesRead)], position + done);
    done += bytesRead;
  }
}
