import { open, rename, readFile, mkdir, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { checksum, formatChecksum, parseChecksum } from "../common/checksum.js";

/**
 * An append-only log of JSON records with group commit: every `append` resolves once its line is on disk
 * (fsync), and appends that arrive while one fsync runs share the next one. Each line carries the CRC-32 of
 * its JSON, so a line torn by a crash (or damaged on disk) is recognised and skipped instead of misread.
 *
 * `rewrite(snapshot)` replaces the whole log with a compact snapshot: written to a temp file, fsynced,
 * renamed over the log, then the directory fsynced, so a crash at any point leaves either the old or the new
 * log, never a mix.
 */
export class OpLog {
  private fh: FileHandle | undefined;
  private pending: string[] = [];
  private waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  private flushing: Promise<void> | undefined;
  /** Set while a rewrite swaps the file: group commits wait for it. */
  private barrier: Promise<void> | undefined;
  /** Bytes appended since the last rewrite (the caller decides when a rewrite pays off). */
  bytesSinceRewrite = 0;

  constructor(
    readonly dir: string,
    readonly name = "queue.log",
  ) {}

  get path(): string {
    return join(this.dir, this.name);
  }

  /** Reads every intact record, in order. A bad line is skipped (counted), never fatal. */
  async load(): Promise<{ records: unknown[]; skipped: number }> {
    await mkdir(this.dir, { recursive: true });
    let text = "";
    try {
      text = await readFile(this.path, "utf8");
    } catch (err) {
      if ((err as { code?: string }).code !== "ENOENT") throw err;
    }
    const records: unknown[] = [];
    let skipped = 0;
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const record = parseLine(line);
      if (record === undefined) skipped++;
      else records.push(record);
    }
    this.fh = await open(this.path, "a");
    // A torn last line has no newline: start the next append on a fresh line.
    if (text.length > 0 && !text.endsWith("\n")) await this.fh.write("\n");
    return { records, skipped };
  }

  /** Queues records for the next group commit; resolves once they are durable. */
  append(records: readonly unknown[]): Promise<void> {
    for (const r of records) this.pending.push(formatLine(r));
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.flushing ??= this.flushLoop();
    return done;
  }

  /**
   * Replaces the log with `records` (the current state). Call it only when no append is pending, so that the
   * snapshot and the log agree; appends made meanwhile go to the new log.
   */
  rewrite(records: readonly unknown[]): Promise<void> {
    const done = this.swap(records).finally(() => (this.barrier = undefined));
    this.barrier = done;
    return done;
  }

  private async swap(records: readonly unknown[]): Promise<void> {
    const tmp = `${this.path}.tmp`;
    const out = await open(tmp, "w");
    try {
      const chunks: string[] = [];
      let size = 0;
      for (const r of records) {
        const line = formatLine(r);
        chunks.push(line);
        size += line.length;
        if (size > 1 << 20) {
          await out.write(chunks.join(""));
          chunks.length = 0;
          size = 0;
        }
      }
      await out.write(chunks.join(""));
      await out.sync();
    } finally {
      await out.close();
    }
    await this.fh?.close();
    try {
      await rename(tmp, this.path);
      await syncDir(this.dir);
      this.bytesSinceRewrite = 0;
    } finally {
      // Appends continue on whichever log is in place (the new one, or the old one if the rename failed).
      this.fh = await open(this.path, "a");
    }
  }

  /** Waits for pending appends, then closes the file. */
  async close(): Promise<void> {
    while (this.flushing ?? this.barrier) await (this.flushing ?? this.barrier)?.catch(() => undefined);
    await this.fh?.close();
    this.fh = undefined;
  }

  get idle(): boolean {
    return this.flushing === undefined && this.barrier === undefined && this.pending.length === 0;
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        while (this.barrier) await this.barrier.catch(() => undefined);
        const lines = this.pending;
        const waiters = this.waiters;
        this.pending = [];
        this.waiters = [];
        try {
          const fh = this.fh;
          if (!fh) throw new Error("the queue log is closed");
          const text = lines.join("");
          await fh.write(text);
          await fh.datasync();
          this.bytesSinceRewrite += text.length;
          for (const w of waiters) w.resolve();
        } catch (err) {
          for (const w of waiters) w.reject(err);
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }
}

function formatLine(record: unknown): string {
  const json = JSON.stringify(record);
  return `${formatChecksum(checksum(Buffer.from(json, "utf8")))} ${json}\n`;
}

function parseLine(line: string): unknown {
  const crc = parseChecksum(line.slice(0, 8));
  const json = line.slice(9);
  if (crc === undefined || line[8] !== " " || checksum(Buffer.from(json, "utf8")) !== crc) return undefined;
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return undefined;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
