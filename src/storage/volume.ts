import { readSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { BackpackError } from "../common/errors.js";
import { decodeVolumeHeader, encodeVolumeHeader, VOLUME_HEADER_BYTES, type VolumeHeader } from "./record.js";
import { fsyncDir, readFully, writeFully } from "./file-io.js";

/**
 * An open volume file shared by readers. Compaction swaps a volume's file for its rewritten copy while reads
 * may still be running on the old one: the old handle is closed only once its last reader is done.
 */
export class VolumeFile {
  private refs = 0;
  private retired = false;
  private closed: Promise<void> | undefined;

  constructor(readonly handle: FileHandle) {}

  async readAt(position: number, length: number): Promise<Buffer> {
    this.refs++;
    try {
      return await readFully(this.handle, position, length);
    } finally {
      this.refs--;
      if (this.refs === 0 && this.retired) void this.close();
    }
  }

  /**
   * Reads exactly `length` bytes at `position` with a synchronous positioned read on the handle's descriptor.
   * For small records in the page cache this costs a few microseconds where a thread-pool read costs tens
   * (promise, hand-off to a libuv thread, wake-up); the caller keeps it to small lengths because the event
   * loop waits for it. No reference is taken: nothing can close the handle while the read runs.
   */
  readAtSync(position: number, length: number): Buffer {
    const buf = Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.handle.fd, buf, done, length - done, position + done);
      if (n === 0) {
        throw new BackpackError(
          "INTERNAL",
          `unexpected end of file at ${position + done} (wanted ${length} bytes)`,
        );
      }
      done += n;
    }
    return buf;
  }

  /** Keeps the handle open for the duration of `fn` (a stream of reads). */
  async hold<T>(fn: (handle: FileHandle) => Promise<T>): Promise<T> {
    this.refs++;
    try {
      return await fn(this.handle);
    } finally {
      this.refs--;
      if (this.refs === 0 && this.retired) void this.close();
    }
  }

  /**
   * Holds the handle open until the returned release is called (once; later calls do nothing). A large read's
   * stream takes it when the read starts and releases it when the stream ends, so it must be consumed or
   * returned.
   */
  acquire(): () => void {
    this.refs++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.refs--;
      if (this.refs === 0 && this.retired) void this.close();
    };
  }

  /** Closes the handle once no reader holds it. */
  retire(): void {
    this.retired = true;
    if (this.refs === 0) void this.close();
  }

  close(): Promise<void> {
    this.closed ??= this.handle.close().catch(() => undefined);
    return this.closed;
  }
}

export function volumePath(dir: string, id: number): string {
  return join(dir, `${String(id).padStart(8, "0")}.vol`);
}

/** Volume file names are the id in 8 digits; anything else in the folder is not a volume. */
export function volumeIdOf(name: string): number | undefined {
  const m = /^(\d{8,10})\.vol$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

export class Volume {
  /** Bytes of live records (those the index points at), padding included. */
  liveBytes = 0;
  /** Bytes of tombstones a compaction had to keep (an older volume may still hold their key). */
  pinnedBytes = 0;
  /** Set when compaction found a damaged live record here: the volume is left as it is. */
  keepAsIs = false;

  constructor(
    readonly header: VolumeHeader,
    readonly path: string,
    public file: VolumeFile,
    /** The append position: the end of the last durable record. */
    public size: number,
  ) {}

  get id(): number {
    return this.header.id;
  }

  get salt(): number {
    return this.header.salt;
  }

  /** Bytes that compaction would reclaim: everything but the volume header and live records. */
  get garbageBytes(): number {
    return Math.max(0, this.size - VOLUME_HEADER_BYTES - this.liveBytes - this.pinnedBytes);
  }

  /** Creates a volume file with its header, durably (file and directory fsync'd). */
  static async create(dir: string, header: VolumeHeader, path = volumePath(dir, header.id)): Promise<Volume> {
    const handle = await open(path, "wx+");
    try {
      await writeFully(handle, [encodeVolumeHeader(header)], 0);
      await handle.sync();
      await fsyncDir(dir);
    } catch (err) {
      await handle.close();
      throw err;
    }
    return new Volume(header, path, new VolumeFile(handle), VOLUME_HEADER_BYTES);
  }

  /** Opens an existing volume for reading and appending; its size is the file's (recovery may truncate it). */
  static async open(path: string): Promise<Volume> {
    const handle = await open(path, "r+");
    try {
      const { size } = await handle.stat();
      const head =
        size >= VOLUME_HEADER_BYTES ? await readFully(handle, 0, VOLUME_HEADER_BYTES) : Buffer.alloc(0);
      const header = decodeVolumeHeader(head);
      if (!header) {
        throw new BackpackError("INTERNAL", `${path} is not a backpack volume (bad or missing header)`);
      }
      return new Volume(header, path, new VolumeFile(handle), size);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }
}
