import assert from "node:assert/strict";
import { open, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { Writable } from "node:stream";
import { pino } from "pino";

import { openStore } from "../../src/storage/store.js";
import type { ReadableBody, Store, StoreOptions } from "../../src/storage/types.js";

/** Opens a store that is closed after the test (also when it fails). */
export async function storeFor(
  t: Pick<TestContext, "after">,
  dir: string,
  options: Omit<StoreOptions, "dir"> = {},
): Promise<Store> {
  const store = await openStore({ dir, ...options });
  t.after(() => store.close());
  return store;
}

export async function bodyBytes(body: ReadableBody): Promise<Buffer> {
  if (body.kind === "buffer") return body.data;
  const chunks: Buffer[] = [];
  for await (const c of body.stream) chunks.push(c);
  return Buffer.concat(chunks);
}

export async function readAll(
  store: Store,
  key: string,
  range?: { start: number; end: number },
): Promise<Buffer> {
  const { body } = await store.read(key, range);
  return bodyBytes(body);
}

/** Deterministic bytes of any size (not all equal, so a misplaced slice shows). */
export function pattern(size: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export async function* chunksOf(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

export const BIG = { maxBytes: 1 << 30 };

/** Flips one byte, `offset` bytes into the first copy of `marker` found in the store's volume files. */
export async function flipOnDisk(dir: string, marker: Buffer, offset: number): Promise<void> {
  for (const name of (await readdir(join(dir, "volumes"))).filter((n) => n.endsWith(".vol"))) {
    const handle = await open(join(dir, "volumes", name), "r+");
    try {
      const bytes = await handle.readFile();
      const at = bytes.indexOf(marker);
      if (at < 0) continue;
      await handle.write(Buffer.from([bytes[at + offset]! ^ 0xff]), 0, 1, at + offset);
      return;
    } finally {
      await handle.close();
    }
  }
  assert.fail("marker not found in any volume");
}

/** A logger whose JSON lines the test can read. */
export function capturingLogger(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n"))
        if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { log: pino({ level: "info" }, stream), lines };
}

/** Flips one byte of a file in place (twice at the same place restores it), and makes it durable. */
export async function flipByte(path: string, at: number): Promise<void> {
  const h = await open(path, "r+");
  try {
    const b = Buffer.alloc(1);
    await h.read(b, 0, 1, at);
    b[0] = b[0]! ^ 0x20;
    await h.write(b, 0, 1, at);
    await h.datasync();
  } finally {
    await h.close();
  }
}
