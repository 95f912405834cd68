import { writevSync } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { BackpackError, systemCode } from "../common/errors.js";

/** Linux accepts at most 1024 buffers per writev. */
const IOV_MAX = 1024;

/** Reads exactly `length` bytes at `position`; a file shorter than that is damage, not a short answer. */
export async function readFully(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) {
      throw new BackpackError(
        "INTERNAL",
        `unexpected end of file at ${position + done} (wanted ${length} bytes)`,
      );
    }
    done += bytesRead;
  }
  return buf;
}

/**
 * Writes every buffer at `position` onward, in writev calls of at most IOV_MAX buffers, retrying short writes.
 * Given a file descriptor instead of a handle, it writes on the calling thread: for a few small records a
 * copy into the page cache costs microseconds, less than the thread-pool round trip of an asynchronous write
 * (which doubles the CPU of a lone small PUT).
 */
export async function writeFully(
  target: FileHandle | number,
  buffers: readonly Uint8Array[],
  position: number,
): Promise<number> {
  let pos = position;
  for (let i = 0; i < buffers.length; i += IOV_MAX) {
    let batch = buffers.slice(i, i + IOV_MAX);
    let want = batch.reduce((n, b) => n + b.length, 0);
    while (want > 0) {
      const bytesWritten =
        typeof target === "number"
          ? writevSync(target, batch, pos)
          : (await target.writev(batch, pos)).bytesWritten;
      if (bytesWritten === 0) throw new BackpackError("INTERNAL", "write made no progress");
      pos += bytesWritten;
      want -= bytesWritten;
      if (want > 0) batch = dropBytes(batch, bytesWritten);
    }
  }
  return pos - position;
}

function dropBytes(buffers: Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = n;
  for (const b of buffers) {
    if (skip >= b.length) {
      skip -= b.length;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

/** fsync of a directory, so that a created, renamed or removed entry in it is durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A disk-full error as the store's code for it; anything else unchanged. */
export function diskError(err: unknown): unknown {
  const code = systemCode(err);
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new BackpackError("NO_SPACE", "no space left on the storage device", { cause: err });
  }
  return err;
}
