import { channel } from "node:diagnostics_channel";
import { fdatasync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { BackpackError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import type { Version } from "../common/version.js";
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
  /** Set when the record was durable but a newer version of its key was already current (see the store). */
  superseded?: { version: Version; deleted: boolean };
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
/** Batches up to this size are written on the event loop's thread (see `writeFully`). */
const SYNC_WRITE_BYTES = 256 << 10;

/** Records whose bytes are written and which wait for (or are in) one fdatasync. */
interface Group {
  ops: RecordOp[];
  placed: Placed[];
  /** The end of this group's bytes in each volume it touched. */
  ends: Map<Volume, number>;
}

/**
 * The single writer of a store: a pipelined group commit. The append loop writes every queued record at the
 * tail as soon as it can (few writev calls per turn) and adds it to the written group; the sync lane runs one
 * fdatasync at a time over the volumes a group touched. When an fdatasync finishes, its group is handed to
 * `onDurable` (the index update) and resolved, and the records written meanwhile start the next fdatasync at
 * once. So the next batch is written (and the HTTP work of the next requests done) while the disk flushes the
 * previous one, instead of the disk idling between batches.
 *
 * Invariants (with `sync: "batch"`):
 * - a record is indexed and acknowledged only after an fdatasync that started after its bytes were written
 *   (a group is closed, and its fdatasync begun, only from records whose writes have completed);
 * - fdatasyncs run one at a time and groups are acknowledged in file order, so every acknowledged record lies
 *   before every unacknowledged byte; a crash leaves at most the unacknowledged groups (written, maybe partly
 *   flushed) at the tail, which recovery cuts at the first record that does not verify;
 * - `Volume.size` is the durable end (checkpoints cover only that); the writer appends at its own tail.
 *
 * `exclusive(fn)` runs `fn` between batches once nothing is written-but-unacknowledged: it sees every
 * acknowledged record indexed and no append or fdatasync in flight (compaction uses it to choose volumes and
 * to swap files).
 */
export class Writer {
  private queue: (RecordOp | ExclusiveOp)[] = [];
  private running: Promise<void> | undefined;
  /** Set when durability can no longer be promised (a failed fsync): every later write is refused. */
  private broken: unknown;
  /** Where the next record goes: past every written byte, durable or not. Unset: the active volume's size. */
  private tail: { vol: Volume; pos: number } | undefined;
  /** Written records waiting for the next fdatasync. */
  private written: Group | undefined;
  /** The fdatasync in flight; resolves once its group is acknowledged (or rejected). */
  private syncing: Promise<void> | undefined;

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

  /** Resolves once everything queued so far is done (written, synced, acknowledged). */
  async idle(): Promise<void> {
    while (this.running || this.syncing) await (this.running ?? this.syncing);
  }

  private kick(): void {
    if (this.running) return;
    // Start on the check phase, after the event loop has read every socket that was ready: the records of
    // all the requests that completed in this turn go out in one write (small writes are synchronous, so
    // without this each request would make its own).
    this.running = new Promise<void>((resolve) => setImmediate(resolve))
      .then(() => this.loop())
      .finally(() => {
        this.running = undefined;
        if (this.queue.length > 0) this.kick();
      });
  }

  private async loop(): Promise<void> {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (head.kind === "exclusive") {
        // Wait until every written record is acknowledged (each finished sync starts the next one).
        while (this.syncing) await this.syncing;
        this.queue.shift();
        await head.run();
        continue;
      }
      let n = 1;
      while (n < this.queue.length && this.queue[n]!.kind === "record") n++;
      await this.writeBatch(this.queue.splice(0, n) as RecordOp[]);
    }
  }

  /** Writes a batch at the tail; then it waits in `written` for the next fdatasync (or is done: sync none). */
  private async writeBatch(ops: RecordOp[]): Promise<void> {
    const live: RecordOp[] = [];
    for (const op of ops) {
      if (this.broken !== undefined) {
        op.reject(this.refusal());
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
    try {
      const { target, volumeMaxBytes } = this.options;
      let vol = target.active();
      let pos = this.tail?.vol === vol ? this.tail.pos : vol.size;
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
        if (iov.length > 0) {
          const { handle } = vol.file;
          await writeFully(iovBytes <= SYNC_WRITE_BYTES ? handle.fd : handle, iov, iovAt);
        }
        iov = [];
        iovAt = pos;
        iovBytes = 0;
      };
      for (const op of live) {
        const { meta, body } = op.record;
        const length = recordLength(
          meta.key.length,
          meta.contentType.length + meta.headers.length,
          meta.size,
        );
        if (pos > VOLUME_HEADER_BYTES && pos + length > volumeMaxBytes) {
          await flush();
          ends.set(vol, pos);
          vol = await target.rollover();
          pos = iovAt = vol.size;
          starts.set(vol, pos);
        }
        const offset = pos;
        push(encodeRecordHead(meta, vol.salt));
        if (body?.kind === "buffer") for (const chunk of body.chunks) if (chunk.length > 0) push(chunk);
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
      this.tail = { vol, pos };
    } catch (err) {
      await this.undo(starts, err);
      const e = diskError(err);
      for (const op of live) op.reject(e);
      return;
    }
    if (this.broken !== undefined) {
      // Broken while these were written (an fsync or index update failed): never acknowledged. Checked here
      // so that a sync lane started below always reaches its first fdatasync (never ends synchronously).
      for (const op of live) op.reject(this.refusal());
      return;
    }
    const group = this.written ?? { ops: [], placed: [], ends: new Map<Volume, number>() };
    for (let i = 0; i < live.length; i++) {
      group.ops.push(live[i]!);
      group.placed.push(placed[i]!);
    }
    for (const [v, end] of ends) group.ends.set(v, end);
    if (this.options.sync === "none") {
      this.acknowledge(group);
      return;
    }
    this.written = group;
    if (!this.syncing) this.syncing = this.syncNext();
  }

  /**
   * Runs fdatasyncs back to back, each over the records written before it started, acknowledging each group
   * once its sync is done; stops when nothing written is left.
   */
  private async syncNext(): Promise<void> {
    for (let group = this.written; group !== undefined; group = this.written) {
      this.written = undefined;
      if (this.broken !== undefined) {
        for (const op of group.ops) op.reject(this.refusal());
        continue;
      }
      try {
        for (const v of group.ends.keys()) await datasync(v.file.handle.fd);
      } catch (err) {
        // After a failed fsync the kernel may have dropped the dirty pages: the file's state is unknown.
        this.broken = err;
        this.options.log.error({ err }, "fsync failed; the store refuses writes until restarted");
        for (const op of group.ops) op.reject(diskError(err));
        continue;
      }
      this.acknowledge(group);
    }
    this.syncing = undefined;
  }

  /** A durable group: volume sizes advance, the index takes the records in file order, the puts resolve. */
  private acknowledge(group: Group): void {
    for (const [v, end] of group.ends) v.size = end;
    const { placed, ops } = group;
    if (commitChannel.hasSubscribers) {
      commitChannel.publish({ records: placed.length, bytes: placed.reduce((n, p) => n + p.length, 0) });
    }
    try {
      this.options.onDurable(placed);
    } catch (err) {
      // The records are durable but the index could not take them: stop writing rather than diverge.
      this.broken = err;
      this.options.log.error({ err }, "index update failed; the store refuses writes until restarted");
      for (const op of ops) op.reject(err);
      return;
    }
    for (let i = 0; i < ops.length; i++) ops[i]!.resolve(placed[i]!);
  }

  private refusal(): BackpackError {
    return new BackpackError("UNAVAILABLE", "the store can no longer write durably; restart the node", {
      cause: this.broken,
    });
  }

  /**
   * Cuts a failed batch's partial bytes off so the next batch appends at a clean tail. Earlier written groups
   * lie before the batch's start in each volume, so the cut leaves them (and their fdatasync) alone.
   */
  private async undo(starts: Map<Volume, number>, err: unknown): Promise<void> {
    for (const [v, start] of starts) {
      try {
        await v.file.handle.truncate(start);
      } catch (truncErr) {
        this.broken = truncErr;
        this.options.log.error({ err: truncErr }, "could not cut a failed append; the store refuses writes");
      }
    }
    const active = this.options.target.active();
    const at = starts.get(active);
    this.tail = at === undefined ? undefined : { vol: active, pos: at };
    this.options.log.warn({ err }, "append failed; the batch was rejected");
  }
}

/** `fdatasync` with a callback: lighter than `FileHandle.datasync()` on the path of every acknowledged write. */
function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
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
