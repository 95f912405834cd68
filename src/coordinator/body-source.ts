import { createReadStream, createWriteStream, type ReadStream, type WriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import { once } from "node:events";
import { BackpackError } from "../common/errors.js";
import { checksum } from "../common/checksum.js";
import type { IdleEntry } from "../common/idle-watch.js";
import { uploadContextOf, type UploadContext } from "./upload-context.js";

/** Unconsumed bytes held for a one-pass body before the client is paused. */
const STREAM_HIGH_WATER = 1 << 20;
/**
 * What `ready()` waits for: this much of the body, or all of it when smaller. At most STREAM_HIGH_WATER, where
 * a one-pass body pauses its client.
 */
const PRIME_BYTES = STREAM_HIGH_WATER;

/**
 * An upload body as it arrives from the client, handed to the storage nodes of its shard at once (each through
 * a reader of its own, `open()`), and again to another node when one fails before committing.
 *
 * - Known size ≤ `retainBytes` (the common case): streamed to the nodes as it arrives and kept in memory, so a
 *   retry replays it without asking the client again.
 * - Known size > `retainBytes`: streamed through once, nothing kept (no temp file, no memory growth). Every
 *   reader opened before the first byte went out gets every byte; a chunk is let go once every open reader has
 *   taken it, and the client is paused while more than a MiB waits for the slowest reader (so the upload goes
 *   at the pace of its slowest node, in bounded memory). A reader closed early (its node failed, or was cut for
 *   falling behind) holds nothing back. Once a byte was let go there is nothing to replay: a new reader is
 *   refused and the caller answers 503 (the client retries). We chose this over spooling every large upload to
 *   disk, which would put a disk write and read on the path of every large upload to save the rare
 *   mid-transfer node failure.
 * - Unknown size (chunked): read completely first, in memory up to `retainBytes` and spooled to a temp file
 *   past that, refused past `maxBodyBytes`; the shard choice needs the size and the node needs a length.
 *
 * The CRC-32 of the bytes received is kept as they arrive, so the coordinator can check what the nodes say they
 * stored. A client that goes away makes every reader throw CLIENT_ABORTED, which aborts the upstream requests
 * (no node indexes a partial record).
 *
 * With the upload's limits (upload-context.ts; set by the service for every PUT): a client silent for the body
 * timeout, or sending under the minimum rate, makes every reader throw REQUEST_TIMEOUT (the client's fault, so
 * no node is blamed for it); bodies are kept in memory only while the shared memory budget allows (past it a
 * declared body streams through without being kept, a chunked one is spooled at once); and `100 Continue` is
 * sent when the body is first read, after every check before it passed.
 */
export class BodySource {
  private chunks: (Buffer | undefined)[] = [];
  /** Chunks before this index were taken by every reader and let go (a body streamed through once). */
  private released = 0;
  /** Bytes received and not yet let go. */
  private queued = 0;
  /** The readers open now. */
  private readers: MemoryReader[] = [];
  private received = 0;
  private crcValue = 0;
  private ended = false;
  private error: BackpackError | undefined;
  private waiters: (() => void)[] = [];
  private taken = false;
  private spoolDir: string | undefined;
  private spoolPath: string | undefined;
  /** Bytes taken from the memory budget for this body (given back by `dispose`). */
  private held = 0;
  /** The body timeout's entry while the client is being read. */
  private watched: IdleEntry | undefined;
  /** True while the client is paused because the node has not taken what came (not the client's time). */
  private heldBack = false;

  private constructor(
    private readonly req: IncomingMessage | undefined,
    readonly size: number,
    private readonly retain: boolean,
    private readonly upload: UploadContext | undefined,
  ) {}

  /** Starts taking a body of known `size` from `req`. */
  static live(req: IncomingMessage, size: number, retainBytes: number): BodySource {
    const upload = uploadContextOf(req);
    // Kept for a retry only while the memory budget allows; otherwise it streams through once.
    const retain = size <= retainBytes && (upload?.limits.memory.tryTake(size) ?? true);
    const body = new BodySource(req, size, retain, upload);
    if (retain && upload) body.held = size;
    body.attach(req);
    return body;
  }

  /**
   * Reads a body of unknown size completely: in memory up to `retainBytes` while the memory budget allows,
   * else in a temp file under `tmpDir`; refused past `maxBodyBytes`, and cut (REQUEST_TIMEOUT) when the client
   * is silent or too slow.
   */
  static async buffered(
    req: IncomingMessage,
    options: { retainBytes: number; maxBodyBytes: number; tmpDir: string },
  ): Promise<BodySource> {
    const upload = uploadContextOf(req);
    const memory = upload?.limits.memory;
    const watch = upload?.limits.watch;
    // The body timeout rejects the read in progress. (Not a race against one long-lived promise: each race
    // would leave a reaction on it holding the chunk it resolved with, for as long as the upload lasts.)
    let stalled: BackpackError | undefined;
    let cut: ((err: BackpackError) => void) | undefined;
    const watched = watch?.start(() => {
      stalled = tooSlow();
      cut?.(stalled);
    });
    upload?.sendContinue();
    const it = req.iterator({ destroyOnReturn: false })[Symbol.asyncIterator]();
    let chunks: Buffer[] = [];
    let held = 0;
    let total = 0;
    let crc = 0;
    let file: WriteStream | undefined;
    let dir: string | undefined;
    let path: string | undefined;
    // Time spent writing to the temp file is the coordinator's, not the client's.
    const busy = async (work: Promise<unknown>): Promise<void> => {
      if (watched) watch?.pause(watched);
      await work;
      if (watched) watch?.touch(watched);
    };
    try {
      for (;;) {
        let next: IteratorResult<unknown>;
        try {
          next = await new Promise<IteratorResult<unknown>>((resolve, reject) => {
            if (stalled) reject(stalled);
            cut = reject;
            it.next().then(resolve, reject);
          });
          cut = undefined;
        } catch (err) {
          if (err instanceof BackpackError) throw err;
          throw new BackpackError("CLIENT_ABORTED", "the client went away during the upload", { cause: err });
        }
        if (next.done) break;
        const chunk = next.value as Buffer;
        if (watched) {
          watch?.touch(watched);
          watch?.received(watched, chunk.length);
        }
        total += chunk.length;
        if (total > options.maxBodyBytes) {
          throw new BackpackError("BODY_TOO_LARGE", `body is larger than ${options.maxBodyBytes} bytes`);
        }
        crc = checksum(chunk, crc);
        if (file === undefined) {
          const fits = total <= options.retainBytes && (memory?.tryTake(chunk.length) ?? true);
          if (fits) {
            chunks.push(chunk);
            if (memory) held += chunk.length;
            continue;
          }
          dir = await mkdtemp(join(options.tmpDir, "backpack-upload-"));
          path = join(dir, "body");
          const f = createWriteStream(path);
          file = f;
          for (const c of chunks) if (!f.write(c)) await busy(once(f, "drain"));
          chunks = [];
          memory?.give(held);
          held = 0;
        }
        if (!file.write(chunk)) await busy(once(file, "drain"));
      }
      if (!req.complete) throw new BackpackError("CLIENT_ABORTED", "the client went away during the upload");
      if (file !== undefined) {
        const f = file;
        await busy(
          new Promise<void>((resolve, reject) =>
            f.end((err?: Error | null) => (err ? reject(err) : resolve())),
          ),
        );
      }
    } catch (err) {
      file?.destroy();
      memory?.give(held);
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
      if (err instanceof BackpackError) throw err;
      throw new BackpackError("CLIENT_ABORTED", "the client went away during the upload", { cause: err });
    } finally {
      if (watched) watch?.stop(watched);
    }
    const body = new BodySource(undefined, total, true, upload);
    body.chunks = chunks;
    body.held = held;
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
    // Small bodies usually arrive in one chunk: that chunk is the body (no copy).
    if (this.chunks.length === 1) return this.chunks[0];
    const whole = Buffer.concat(this.chunks as Buffer[], this.received);
    // Kept as the only chunk (unless a reader is going through the chunks), so that every node's write (and a
    // retry) shares it.
    if (this.readers.length === 0) this.chunks = [whole];
    return whole;
  }

  /** Waits until every byte has arrived; throws CLIENT_ABORTED when the client went away. */
  async whole(): Promise<void> {
    while (!this.ended) {
      if (this.error) throw this.error;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.error) throw this.error;
  }

  /**
   * A fresh pass over the body (from the start), for one node. Readers opened together get the same bytes;
   * close each one when its node is done with it (or failed), so that it holds nothing back. Throws
   * UNAVAILABLE when the body can no longer be replayed.
   */
  open(): AsyncIterable<Uint8Array> & BodyReader {
    if (!this.replayable) {
      throw new BackpackError(
        "UNAVAILABLE",
        "the upload failed mid-way and was not kept for a retry (too large, or memory is short); send it again",
        { retryAfterSec: 1 },
      );
    }
    if (this.spoolPath !== undefined) {
      return spooledReader(createReadStream(this.spoolPath, { highWaterMark: 256 * 1024 }));
    }
    const reader = new MemoryReader(this);
    this.readers.push(reader);
    return reader;
  }

  /** Frees memory and the temp file; a body still arriving is left to the HTTP server to discard. */
  async dispose(): Promise<void> {
    this.chunks = [];
    this.unwatch();
    this.upload?.limits.memory.give(this.held);
    this.held = 0;
    if (this.req && !this.ended) this.req.resume();
    if (this.spoolDir !== undefined) await rm(this.spoolDir, { recursive: true, force: true });
  }

  private attach(req: IncomingMessage): void {
    const watch = this.upload?.limits.watch;
    if (watch) {
      this.watched = watch.start(() => {
        this.watched = undefined;
        if (this.ended || this.error) return;
        this.error = tooSlow();
        this.wake();
      });
    }
    this.upload?.sendContinue();
    req.on("data", (chunk: Buffer) => {
      this.received += chunk.length;
      this.crcValue = checksum(chunk, this.crcValue);
      this.chunks.push(chunk);
      this.queued += chunk.length;
      if (this.watched) {
        watch?.touch(this.watched);
        watch?.received(this.watched, chunk.length);
      }
      if (!this.retain && this.queued > STREAM_HIGH_WATER) this.holdBack();
      this.wake();
    });
    req.on("end", () => {
      this.ended = true;
      this.unwatch();
      this.wake();
    });
    const aborted = (): void => {
      this.unwatch();
      if (this.ended || this.error) return;
      this.error = new BackpackError("CLIENT_ABORTED", "the client went away during the upload");
      this.wake();
    };
    req.on("error", aborted);
    req.on("close", aborted);
  }

  /** Pauses the client while the node catches up: that wait is not the client's. */
  private holdBack(): void {
    this.req?.pause();
    this.heldBack = true;
    if (this.watched) this.upload?.limits.watch.pause(this.watched);
  }

  /** Lets the client send again (the body timeout runs again if it was held back). */
  private resumeClient(): void {
    this.req?.resume();
    if (!this.heldBack) return;
    this.heldBack = false;
    if (this.watched) this.upload?.limits.watch.touch(this.watched);
  }

  private unwatch(): void {
    if (this.watched) this.upload?.limits.watch.stop(this.watched);
    this.watched = undefined;
  }

  /**
   * Resolves once the first MiB of the body (or all of it, when smaller) has arrived; throws REQUEST_TIMEOUT
   * when the client is too slow to get there, CLIENT_ABORTED when it goes away. Awaited before a shard is
   * chosen and a node is asked, a client that is slow to send reserves no shard space and no node's upload
   * bounds: the body timeout cuts it first.
   */
  async ready(): Promise<void> {
    const need = Math.min(this.size, PRIME_BYTES);
    while (!this.ended && this.received < need) {
      if (this.error) throw this.error;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    if (this.error) throw this.error;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** The next chunk for `reader`, or undefined at the end of the body. */
  async nextChunk(reader: MemoryReader): Promise<Buffer | undefined> {
    for (;;) {
      if (this.error) throw this.error;
      if (reader.closed) throw new BackpackError("UNAVAILABLE", "the body reader was closed");
      const chunk = this.chunks[reader.at];
      if (chunk !== undefined) {
        reader.at++;
        reader.bytes += chunk.length;
        if (!this.retain) this.release();
        return chunk;
      }
      if (this.ended) return undefined;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** A reader is done (or given up): it holds nothing back from now on. */
  closeReader(reader: MemoryReader): void {
    if (reader.closed) return;
    reader.closed = true;
    this.readers = this.readers.filter((r) => r !== reader);
    if (!this.retain) this.release();
    // A reader waiting for more must see that it was closed.
    this.wake();
  }

  /** Lets go of the chunks every open reader has taken; the client sends again once little is waiting. */
  private release(): void {
    if (this.readers.length === 0) return;
    let upTo = this.chunks.length;
    for (const r of this.readers) upTo = Math.min(upTo, r.at);
    while (this.released < upTo) {
      const chunk = this.chunks[this.released] as Buffer;
      this.chunks[this.released++] = undefined;
      this.queued -= chunk.length;
      this.taken = true;
    }
    if (this.queued <= STREAM_HIGH_WATER / 2) this.resumeClient();
  }
}

/** One node's pass over a body: an async iterable of its chunks, with what it has taken so far. */
export interface BodyReader extends AsyncIterable<Uint8Array> {
  /** Bytes of the body taken so far. */
  readonly bytes: number;
  /** Done with the body (finished, failed or cut): holds nothing back from now on. Idempotent. */
  close(): void;
}

class MemoryReader implements BodyReader, AsyncIterator<Uint8Array> {
  /** Index of the next chunk to take. */
  at = 0;
  bytes = 0;
  closed = false;

  constructor(private readonly body: BodySource) {}

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this;
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    const chunk = await this.body.nextChunk(this);
    return chunk === undefined ? { done: true, value: undefined } : { done: false, value: chunk };
  }

  return(): Promise<IteratorResult<Uint8Array>> {
    this.close();
    return Promise.resolve({ done: true, value: undefined });
  }

  close(): void {
    this.body.closeReader(this);
  }
}

/** A reader over a spooled body (a file stream of its own). */
function spooledReader(stream: ReadStream): AsyncIterable<Uint8Array> & BodyReader {
  let bytes = 0;
  return {
    get bytes() {
      return bytes;
    },
    close: () => stream.destroy(),
    async *[Symbol.asyncIterator]() {
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          bytes += chunk.length;
          yield chunk;
        }
      } finally {
        stream.destroy();
      }
    },
  };
}

function tooSlow(): BackpackError {
  return new BackpackError(
    "REQUEST_TIMEOUT",
    "the client stopped sending the body, or sent it too slowly (see --body-timeout and --min-body-rate)",
  );
}
