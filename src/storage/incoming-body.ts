import { open, rm, type FileHandle } from "node:fs/promises";
import { BackpackError } from "../common/errors.js";
import { checksum } from "../common/checksum.js";
import type { PutOptions } from "./types.js";

/**
 * A put's body, fully received and checked against its options before it is queued for the append: in
 * memory up to `maxBufferedBytes`, else spooled to a temp file (so a slow client never holds up the writer).
 */
export type IncomingBody =
  | { kind: "buffer"; chunks: readonly Buffer[]; size: number; crc: number }
  | { kind: "spool"; handle: FileHandle; path: string; size: number; crc: number };

export async function discardBody(body: IncomingBody | undefined): Promise<void> {
  if (body?.kind !== "spool") return;
  await body.handle.close().catch(() => undefined);
  await rm(body.path, { force: true }).catch(() => undefined);
}

function aborted(): BackpackError {
  return new BackpackError("CLIENT_ABORTED", "the upload was aborted");
}

export async function receiveBody(
  body: AsyncIterable<Uint8Array>,
  options: PutOptions,
  limits: { maxBufferedBytes: number; spoolPath: () => string },
): Promise<IncomingBody> {
  checkStart(options);
  const result = await receiveStream(body, options, limits);
  if (!crcMatches(result, options)) {
    await discardBody(result);
    throw mismatch(result, options);
  }
  return result;
}

/** `receiveBody` for a body already in memory: checked and checksummed at once, no promise. */
export function receiveBuffer(body: Uint8Array, options: PutOptions): IncomingBody {
  checkStart(options);
  const data = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  checkLength(data.length, options, true);
  const result: IncomingBody = { kind: "buffer", chunks: [data], size: data.length, crc: checksum(data) };
  if (!crcMatches(result, options)) throw mismatch(result, options);
  return result;
}

function checkStart({ size, maxBytes, signal }: PutOptions): void {
  if (size !== undefined && size > maxBytes) throw tooLarge(maxBytes);
  if (signal?.aborted) throw aborted();
}

function crcMatches(body: IncomingBody, options: PutOptions): boolean {
  return options.expectedCrc === undefined || options.expectedCrc >>> 0 === body.crc;
}

function mismatch(body: IncomingBody, options: PutOptions): BackpackError {
  return new BackpackError("CHECKSUM_MISMATCH", "the body does not match the checksum it was sent with", {
    details: { expected: (options.expectedCrc ?? 0) >>> 0, actual: body.crc },
  });
}

async function receiveStream(
  body: AsyncIterable<Uint8Array>,
  options: PutOptions,
  limits: { maxBufferedBytes: number; spoolPath: () => string },
): Promise<IncomingBody> {
  const signal = options.signal;
  const iterator = body[Symbol.asyncIterator]();
  let chunks: Buffer[] = [];
  let total = 0;
  let crc = 0;
  let spool: { handle: FileHandle; path: string } | undefined;
  // A client that goes away while we wait for its next chunk must end the wait now, not at the next chunk.
  let onAbort: (() => void) | undefined;
  const abortWait = new Promise<never>((_, reject) => {
    onAbort = () => reject(aborted());
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  abortWait.catch(() => undefined);
  try {
    for (;;) {
      const next = signal ? await Promise.race([iterator.next(), abortWait]) : await iterator.next();
      if (next.done) break;
      const chunk = next.value;
      const buf = Buffer.isBuffer(chunk)
        ? chunk
        : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      total += buf.length;
      checkLength(total, options, false);
      crc = checksum(buf, crc);
      if (spool) {
        await spool.handle.write(buf, 0, buf.length, total - buf.length);
        continue;
      }
      chunks.push(buf);
      if (total > limits.maxBufferedBytes) {
        const path = limits.spoolPath();
        spool = { handle: await open(path, "wx+"), path };
        let pos = 0;
        for (const c of chunks) {
          await spool.handle.write(c, 0, c.length, pos);
          pos += c.length;
        }
        chunks = [];
      }
    }
    if (signal?.aborted) throw aborted();
    checkLength(total, options, true);
  } catch (err) {
    // Not awaited: a generator's return() waits behind a next() that may never settle.
    iterator.return?.().catch(() => undefined);
    if (spool) await discardBody({ kind: "spool", ...spool, size: total, crc });
    throw err;
  } finally {
    if (onAbort) signal?.removeEventListener("abort", onAbort);
  }
  if (spool) return { kind: "spool", ...spool, size: total, crc };
  // The chunks as they came: the writer hands them to one writev, with no copy into one buffer.
  return { kind: "buffer", chunks, size: total, crc };
}

function tooLarge(maxBytes: number): BackpackError {
  return new BackpackError("BODY_TOO_LARGE", `the body is larger than the limit of ${maxBytes} bytes`, {
    details: { maxBytes },
  });
}

/** Checks a running or final length against the declared size and the limit. */
function checkLength(total: number, options: PutOptions, final: boolean): void {
  if (total > options.maxBytes) throw tooLarge(options.maxBytes);
  const size = options.size;
  if (size === undefined) return;
  if (total > size || (final && total !== size)) {
    throw new BackpackError(
      "BAD_REQUEST",
      `the body is ${total} bytes${final ? "" : " or more"}, not the ${size} declared`,
      {
        details: { declared: size },
      },
    );
  }
}
