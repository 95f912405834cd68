/**
 * Storage engine benchmark (no HTTP): index memory per object and time from open to serving, at 1M objects.
 *
 *   node dist/bench/storage-bench.js            (BENCH_OBJECTS=1000000, BENCH_TAIL=100000 by default)
 *
 * 1. Index heap: the store's IndexTable holding N keys, against a baseline `Map<string, {…}>` holding the same
 *    keys and fields, both measured as heap + array-buffer growth after a forced GC, minus the keys' own UTF-8
 *    bytes.
 * 2. Tombstones: a store that recorded N versioned deletes (of keys it never held, as a replica records deletes
 *    for copies still on their way): heap + array buffers the store grew by, per tombstone, minus the keys'
 *    bytes. Tombstones are index entries like objects, kept for the grace period (7 days by default).
 * 3. Open to serving: a store with N objects of 100 bytes (written with sync "none" to build it quickly, then
 *    closed, which writes the checkpoint). Times from `openStore()` to the first read answered: with the
 *    checkpoint, with the checkpoint plus a tail of BENCH_TAIL records written after it, and the baseline of a
 *    full rescan without any checkpoint.
 */
import { cpus, totalmem } from "node:os";
import { mkdtemp, rm, copyFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { IndexTable } from "../src/storage/index-table.js";
import { openStore } from "../src/storage/store.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

const N = Number(process.env.BENCH_OBJECTS ?? 1_000_000);
const TAIL = Number(process.env.BENCH_TAIL ?? 100_000);
const keyOf = (i: number): string => `photos/2024/${i % 997}/IMG_${i}.jpg`;

function memory(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function fmt(n: number, digits = 1): string {
  return n.toLocaleString("en-US", { maximumFractionDigits: digits });
}

async function indexHeap(): Promise<void> {
  let keyBytes = 0;
  for (let i = 0; i < N; i++) keyBytes += Buffer.byteLength(keyOf(i));
  const types = ["image/jpeg", "image/png", undefined];

  const before = memory();
  const index = new IndexTable(7);
  for (let i = 0; i < N; i++) {
    index.insert(Buffer.from(keyOf(i)), {
      volume: 1 + (i >> 16),
      offset: i * 176,
      size: 100,
      bodyCrc: i,
      version: { stamp: 1_800_000_000_000_000 + i, origin: 1 },
      contentType: types[i % 3],
      tombstone: false,
    });
  }
  const used = memory() - before;
  const perObject = (used - keyBytes) / N;
  const structural = (index.heapBytes() - index.arena.live) / N;
  if (index.count !== N) throw new Error("index lost keys");

  const mapBefore = memory();
  const map = new Map<
    string,
    { volume: number; offset: number; size: number; crc: number; time: number; type: string | undefined }
  >();
  for (let i = 0; i < N; i++) {
    map.set(keyOf(i), {
      volume: 1 + (i >> 16),
      offset: i * 176,
      size: 100,
      crc: i,
      time: 1_800_000_000_000 + i,
      type: types[i % 3],
    });
  }
  const mapUsed = memory() - mapBefore;
  const mapPerObject = (mapUsed - keyBytes) / N;
  if (map.size !== N || index.find(Buffer.from(keyOf(5))) < 0) throw new Error("unreachable");

  console.log(`\n## Index heap at ${fmt(N, 0)} objects (avg key ${fmt(keyBytes / N)} bytes)`);
  console.log(`| structure | heap bytes per object beyond key bytes |`);
  console.log(`|---|---|`);
  console.log(`| IndexTable (measured: heap + array buffers after GC) | ${fmt(perObject)} |`);
  console.log(`| IndexTable (its own accounting: slots + pages + arena slack) | ${fmt(structural)} |`);
  console.log(`| baseline Map<string, object> | ${fmt(mapPerObject)} |`);
  console.log(`| ratio IndexTable / Map | ${fmt(perObject / mapPerObject, 3)} |`);
}

async function tombstoneHeap(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "backpack-bench-"));
  try {
    let keyBytes = 0;
    for (let i = 0; i < N; i++) keyBytes += Buffer.byteLength(keyOf(i));
    const store = await openStore({ dir, sync: "none", readCacheBytes: 0 });
    const before = memory();
    const stamp = Date.now() * 1000;
    const CONC = 512;
    for (let i = 0; i < N; i += CONC) {
      const batch: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(N, i + CONC); j++) {
        batch.push(store.delete(keyOf(j), { version: { stamp: stamp + j, origin: 1 } }));
      }
      await Promise.all(batch);
    }
    const used = memory() - before;
    const stats = store.stats();
    if (stats.tombstones !== N || stats.objects !== 0) throw new Error("tombstones lost");
    console.log(`\n## Tombstones: ${fmt(N, 0)} deletes remembered (avg key ${fmt(keyBytes / N)} bytes)`);
    console.log(`| what | bytes per tombstone |`);
    console.log(`|---|---|`);
    console.log(`| store heap + array buffers, beyond key bytes | ${fmt((used - keyBytes) / N)} |`);
    console.log(`| with the key bytes | ${fmt(used / N)} |`);
    console.log(`| on disk (tombstone records) | ${fmt(stats.liveBytes / N)} |`);
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function timeToServe(dir: string, key: string): Promise<{ ms: number; scanned: number }> {
  let scanned = 0;
  const log = {
    info: (o: unknown) => {
      const rec = o as { scannedBytes?: number };
      if (typeof rec.scannedBytes === "number") scanned = rec.scannedBytes;
    },
  };
  const t0 = performance.now();
  const store = await openStore({ dir, log: silentWith(log.info) });
  const r = await store.read(key);
  const ms = performance.now() - t0;
  if (r.info.size !== 100) throw new Error("wrong object");
  await store.close();
  return { ms, scanned };
}

/** A logger that drops everything but hands `info` objects to `onInfo` (to read the scanned byte count). */
function silentWith(onInfo: (o: unknown) => void): import("../src/common/logger.js").Logger {
  const noop = (): void => undefined;
  const logger = {
    info: onInfo,
    warn: noop,
    error: noop,
    debug: noop,
    trace: noop,
    fatal: noop,
    child: () => logger,
  };
  return logger as unknown as import("../src/common/logger.js").Logger;
}

async function openToServe(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "backpack-bench-"));
  try {
    const body = Buffer.alloc(100, 7);
    const t0 = performance.now();
    let store = await openStore({ dir, sync: "none" });
    const CONC = 512;
    for (let i = 0; i < N; i += CONC) {
      const batch: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(N, i + CONC); j++)
        batch.push(store.put(keyOf(j), body, { maxBytes: 1000 }));
      await Promise.all(batch);
    }
    await store.close();
    const fillSec = (performance.now() - t0) / 1000;
    await copyFile(join(dir, "index.ckpt"), join(dir, "saved.ckpt"));

    const withCheckpoint = await timeToServe(dir, keyOf(N - 1));

    store = await openStore({ dir, sync: "none" });
    for (let i = 0; i < TAIL; i += CONC) {
      const batch: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(TAIL, i + CONC); j++)
        batch.push(store.put(`tail/${j}`, body, { maxBytes: 1000 }));
      await Promise.all(batch);
    }
    await store.close();
    await copyFile(join(dir, "saved.ckpt"), join(dir, "index.ckpt"));
    const withTail = await timeToServe(dir, `tail/${TAIL - 1}`);

    await rm(join(dir, "index.ckpt"));
    const fullScan = await timeToServe(dir, keyOf(0));

    console.log(
      `\n## Open to serving, ${fmt(N, 0)} objects of 100 bytes (filled in ${fmt(fillSec)} s with sync none)`,
    );
    console.log(`| start | time to first read | bytes scanned |`);
    console.log(`|---|---|---|`);
    console.log(`| with checkpoint | ${fmt(withCheckpoint.ms, 0)} ms | ${fmt(withCheckpoint.scanned, 0)} |`);
    console.log(
      `| checkpoint + tail of ${fmt(TAIL, 0)} records | ${fmt(withTail.ms, 0)} ms | ${fmt(withTail.scanned, 0)} |`,
    );
    console.log(
      `| baseline: full rescan, no checkpoint | ${fmt(fullScan.ms, 0)} ms | ${fmt(fullScan.scanned, 0)} |`,
    );
    console.log(`| ratio checkpoint / full rescan | ${fmt(withCheckpoint.ms / fullScan.ms, 3)} | |`);
    console.log(
      `| tail scan rate | ${fmt(withTail.scanned / 1e6 / ((withTail.ms - withCheckpoint.ms) / 1000))} MB/s | |`,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

console.log("# backpack storage engine benchmark");
console.log(
  `machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${fmt(totalmem() / 2 ** 30)} GiB RAM; Node ${process.version}`,
);
console.log(
  `objects: ${fmt(N, 0)} (BENCH_OBJECTS), tail: ${fmt(TAIL, 0)} (BENCH_TAIL); single process, no HTTP`,
);
await indexHeap();
await tombstoneHeap();
await openToServe();
