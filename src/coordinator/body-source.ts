import { createReadStream, createWriteStream, type WriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { once } from "node:events";
import { BackpackError } from "../common/errors.js";
import { checksum } from "../common/checksum.js";

/** Unconsumed bytes held for a one-pass body before the client is paused. */
const STREAM_HIGH_WATER = 1 << 20;

/**
 * An upload body as it arrives from the client, handed to one storage node and, when that node fails before
 * committing, again to the next one.
 *
 * - Known size ≤ `retainBytes` (the common case): streamed to the node as it arrives and kept in memory, so a
 *   retry replays it without asking the client again.
 * - Known size > `retainBytes`: streamed through once, nothing kept (no temp file, no memory growth). A node
 *   that refuses the connection before any byte was taken is skipped and the next one gets the stream; once
 *   bytes went to a node that then fails, there is nothing to replay and the upload is answered 503 (the client
 *   retries). We chose this over spooling every large upload to disk, which would put a disk write and read on
 *   the path of every large upload to save the rare mid-transfer node failure.
 * - Unknown size (chunked): read completely first, in memory up to `retainBytes` and spooled to a temp file
 *   past that, refused past `maxBodyBytes`; the shard choice needs the size and the node needs a length.
 *
 * The CRC-32 of the bytes received is kept as they arrive, so the coordinator can check what the node says it
 * stored. A client that goes away makes every reader throw CLIENT_ABORTED, which aborts the upstream request
 * (the node never indexes a partial record).
 */
export class BodySource {
  private chunks: (Buffer | undefined)[] = [];
  private head = 0;
  private queued = 0;
  private received = 0;
  private crcValue = 0;
  private ended = false;
  private error: BackpackError | undefined;
  private waiters: (() => void)[] = [];
  private taken = false;
  private spoolDir: string | undefined;
  private spoolPath: string | undefined;

  private constructor(
    private readonly req: IncomingMessage | undefined,
    readonly size: number,
    private readonly retain: boolean,
  ) {}

  /** Starts taking a body of known `size` from `req`. */
  static live(req: IncomingMessage, size: number, retainBytes: number): BodySource {
    const body = new BodySource(req, size, size <= retainBytes);
    body.attach(req);
    return body;
  }

  /** Reads a body of unknown size completely (memory up to `retainBytes`, then a temp file under `tmpDir`). */
  static async buffered(
    req: IncomingMessage,
    options: { retainBytes: number; maxBodyBytes: number; tmpDir: string },
  ): Promise<BodySource> {
    const chunks: Buffer[] = [];
    let total = 0;
    let crc = 0;
    let file: WriteStream | undefined;
    let dir: string | undefined;
    let path: string | undefined;
    try {
      for await (const chunk of req as AsyncIterable<Buffer>) {
        total += chunk.length;
        if (total > options.maxBodyBytes) {
          throw new BackpackError("BODY_TOO_LARGE", `body is larger than ${options.maxBodyBytes} bytes`);
        }
        crc = checksum(chunk, crc);
        if (file === undefined && total > options.retainBytes) {
          dir = await mkdtemp(join(options.tmpDir, "backpack-upload-"));
          path = join(dir, "body");
          file = createWriteStream(path);
          for (const c of chunks.splice(0)) if (!file.write(c)) await once(file, "drain");
        }
        if (file === undefined) chunks.push(chunk);
        else if (!file.write(chunk)) await once(file, "drain");
      }
      if (file !== undefined) {
        const f = file;
        await new Promise<void>((resolve, reject) =>
          f.end((err?: Error | null) => (err ? reject(err) : resolve())),
        );
      }
    } catch (err) {
      file?.destroy();
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
      if (err instanceof BackpackError) throw err;
      throw new BackpackError("CLIENT_ABORTED", "the client went away during the upload", { cause: err });
    }
    const body = new BodySource(undefined, total, true);
    body.chunks = chunks;
    body.received = total;
    body.crcValue = crc;
    body.ended = true;
    body.spoolDir = dir;
    body.spoolPath = path;
    return body;
  }

  /** True while another attempt can still be given the whole body. */
  get replayable(): boolean {
    return this.retain || !this.taken;
  }

  /** True once every byte has arrived. */
  get complete(): boolean {
    return this.ended;
  }

  /** CRC-32 of the whole body; only meaningful once `complete`. */
  get crc(): number {
    return this.crcValue;
  }

  /** The reason the body cannot be read (the client went away), if any. */
  get failure(): BackpackError | undefined {
    return this.error;
  }

  /** The whole body as one buffer when it is complete and held in memory (small uploads). */
  buffer(): Buffer | undefined {
    if (!this.ended || !this.retain || this.spoolPath !== undefined) return undefined;
    return Buffer.concat(this.chunks as Buffer[], this.received);
  }

  /** Waits until every byte has arrived; throws CLIENT_ABORTED when the client went away. */
  async whole(): Promise<void> {
    while (!this.ended) {
      if (this.error) throw this.error;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.error) throw this.error;
  }

  /** A fresh pass over the body (from the start). Throws UNAVAILABLE when it can no longer be replayed. */
  open(): AsyncIterable<Uint8Array> {
    if (!this.replayable) {
      throw new BackpackError(
        "UNAVAILABLE",
        "the upload failed mid-way and is too large to retry; send it again",
        {
          retryAfterSec: 1,
        },
      );
    }
    if (this.spoolPath !== undefined) return createReadStream(this.spoolPath, { highWaterMark: 256 * 1024 });
    return this.retain ? this.replay() : this.drain();
  }

  /** Frees memory and the temp file; a body still arriving is left to the HTTP server to discard. */
  async dispose(): Promise<void> {
    this.chunks = [];
    if (this.req && !this.ended) this.req.resume();
    if (this.spoolDir !== undefined) await rm(this.spoolDir, { recursive: true, force: true });
  }

  private attach(req: IncomingMessage): void {
    req.on("data", (chunk: Buffer) => {
      this.received += chunk.length;
      this.crcValue = checksum(chunk, this.crcValue);
      this.chunks.push(chunk);
      this.queued += chunk.length;
      if (!this.retain && this.queued > STREAM_HIGH_WATER) req.pause();
      this.wake();
    });
    req.on("end", () => {
      this.ended = true;
      this.wake();
    });
    const aborted = (): void => {
      if (this.ended || this.error) return;
      this.error = new BackpackError("CLIENT_ABORTED", "the client went away during the upload");
      this.wake();
    };
    req.on("error", aborted);
    req.on("close", aborted);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private async *replay(): AsyncGenerator<Uint8Array> {
    let i = 0;
    for (;;) {
      if (this.error) throw this.error;
      const chunk = this.chunks[i];
      if (chunk !== undefined) {
        i++;
        yield chunk;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private async *drain(): AsyncGenerator<Uint8Array> {
    for (;;) {
      if (this.error) throw this.error;
      if (this.head < this.chunks.length) {
        const chunk = this.chunks[this.head] as Buffer;
        this.chunks[this.head++] = undefined;
        this.queued -= chunk.length;
        this.taken = true;
        if (this.queued <= STREAM_HIGH_WATER / 2) this.req?.resume();
        yield chunk;
        continue;
      }
      if (this.ended) return;
      this.req?.resume();
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
}
