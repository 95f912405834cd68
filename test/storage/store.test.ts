import { test } from "node:test";
import assert from "node:assert/strict";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { checksum } from "../../src/common/checksum.js";
import { hasCode } from "../../src/common/errors.js";
import { openStore } from "../../src/storage/store.js";
import { tempDir } from "../helpers/tmp.js";
import { BIG, bodyBytes, chunksOf, flipOnDisk, pattern, readAll, storeFor } from "./helpers.js";

const MiB = 1 << 20;
const SIZES = [0, 1, 7, 8, 9, 1000, 4096, 65_537, MiB - 3, 4 * MiB, 4 * MiB + 1, 12 * MiB, 33 * MiB + 5];

void test("round trip of every size class, as one buffer and as a stream, across a reopen", async (t) => {
  const dir = await tempDir(t);
  // maxBufferedBytes 4 MiB: larger bodies are spooled on put and streamed on read.
  const opts = { maxBufferedBytes: 4 * MiB };
  let store = await storeFor(t, dir, opts);
  for (const [n, size] of SIZES.entries()) {
    const data = pattern(size, n + 1);
    const info = await store.put(`buf/${size}`, data, { ...BIG, contentType: "application/x-test" });
    assert.equal(info.size, size);
    assert.equal(info.bodyCrc, checksum(data));
    await store.put(`stream/${size}`, chunksOf(data, 64 * 1024 + 3), { ...BIG, size });
  }
  const check = async (): Promise<void> => {
    for (const [n, size] of SIZES.entries()) {
      const data = pattern(size, n + 1);
      for (const key of [`buf/${size}`, `stream/${size}`]) {
        const { info, body } = await store.read(key);
        assert.equal(body.kind, size <= 4 * MiB ? "buffer" : "stream", key);
        assert.ok((await bodyBytes(body)).equals(data), key);
        assert.equal(info.bodyCrc, checksum(data));
        assert.equal(info.size, size);
      }
      assert.equal(store.stat(`buf/${size}`)?.contentType, "application/x-test");
      assert.equal(store.stat(`stream/${size}`)?.contentType, undefined);
    }
  };
  await check();
  await store.close();
  store = await storeFor(t, dir, opts);
  t.after(() => store.close());
  await check();
  assert.deepEqual(await readdir(join(dir, "tmp")), [], "no spool file left behind");
});

void test("ranges: small records verified whole then sliced; large ones streamed", async (t) => {
  const store = await storeFor(t, await tempDir(t), { maxBufferedBytes: 64 * 1024 });
  const small = pattern(10_000, 3);
  const large = pattern(300_000, 4);
  await store.put("s", small, BIG);
  await store.put("l", large, BIG);
  for (const [start, end] of [
    [0, 0],
    [0, 1],
    [5, 9999],
    [9999, 10_000],
  ] as const) {
    assert.ok((await readAll(store, "s", { start, end })).equals(small.subarray(start, end)));
  }
  for (const [start, end] of [
    [0, 300_000],
    [1, 2],
    [70_000, 299_999],
  ] as const) {
    assert.ok((await readAll(store, "l", { start, end })).equals(large.subarray(start, end)));
  }
  await assert.rejects(store.read("s", { start: 5, end: 10_001 }), { code: "RANGE_NOT_SATISFIABLE" });
  await assert.rejects(store.read("s", { start: 6, end: 5 }), { code: "RANGE_NOT_SATISFIABLE" });
});

void test("overwrite supersedes, delete writes a tombstone, stats follow", async (t) => {
  const dir = await tempDir(t);
  let store = await storeFor(t, dir);
  await store.put("k", Buffer.from("one"), BIG);
  await store.put("k", Buffer.from("second"), { ...BIG, contentType: "text/plain" });
  assert.equal((await readAll(store, "k")).toString(), "second");
  assert.equal(store.stat("k")?.contentType, "text/plain");
  assert.equal(store.stats().objects, 1);
  assert.ok(store.stats().garbageBytes > 0);
  assert.equal(await store.delete("k"), true);
  assert.equal(await store.delete("k"), false);
  assert.equal(store.stat("k"), undefined);
  await assert.rejects(store.read("k"), { code: "NOT_FOUND" });
  await store.put("other", Buffer.from("x"), BIG);
  await store.close();
  store = await storeFor(t, dir);
  t.after(() => store.close());
  assert.equal(store.stat("k"), undefined);
  assert.equal((await readAll(store, "other")).toString(), "x");
  assert.equal(store.stats().objects, 1);
});

void test("put options are enforced and a refused put leaves nothing indexed", async (t) => {
  const dir = await tempDir(t);
  const store = await storeFor(t, dir, { maxBufferedBytes: 1000 });
  const data = pattern(5000);
  const refuse = async (p: Promise<unknown>, code: string): Promise<void> => {
    await assert.rejects(p, (err: unknown) => hasCode(err, code as "BAD_REQUEST"));
  };
  await refuse(store.put("a", data, { maxBytes: 4999 }), "BODY_TOO_LARGE");
  await refuse(store.put("a", chunksOf(data, 700), { maxBytes: 4999 }), "BODY_TOO_LARGE");
  await refuse(store.put("a", chunksOf(data, 700), { maxBytes: 30_000, size: 20_000 }), "BAD_REQUEST");
  await refuse(store.put("a", chunksOf(data, 700), { maxBytes: 10_000, size: 4000 }), "BAD_REQUEST");
  await refuse(store.put("a", chunksOf(data, 700), { maxBytes: 4000, size: 9000 }), "BODY_TOO_LARGE");
  await refuse(
    store.put("a", data, { maxBytes: 10_000, expectedCrc: checksum(data) ^ 1 }),
    "CHECKSUM_MISMATCH",
  );
  await refuse(store.put("a", chunksOf(data, 64), { maxBytes: 10_000, expectedCrc: 7 }), "CHECKSUM_MISMATCH");
  await refuse(store.put("", data, BIG), "INVALID_KEY");
  await refuse(store.put("é".repeat(513), data, BIG), "INVALID_KEY");
  await refuse(store.put("a", data, { ...BIG, contentType: "x".repeat(2000) }), "BAD_REQUEST");
  assert.equal(store.stat("a"), undefined);
  assert.equal(store.stats().objects, 0);
  assert.deepEqual(await readdir(join(dir, "tmp")), []);
  const ok = await store.put("a", chunksOf(data, 64), {
    maxBytes: 5000,
    size: 5000,
    expectedCrc: checksum(data),
  });
  assert.equal(ok.bodyCrc, checksum(data));
  const longKey = "k".repeat(1024);
  await store.put(longKey, data, BIG);
  assert.ok((await readAll(store, longKey)).equals(data));
});

void test("an upload aborted mid-body leaves nothing indexed and no spool file", async (t) => {
  const dir = await tempDir(t);
  const store = await storeFor(t, dir, { maxBufferedBytes: 1000 });
  for (const firstChunk of [100, 5000]) {
    const ac = new AbortController();
    let sent = false;
    // A body that sends one chunk, then stalls like a client that went away.
    const body: AsyncIterable<Uint8Array> = {
      [Symbol.asyncIterator]: () => ({
        next: async () => {
          if (!sent) {
            sent = true;
            setImmediate(() => ac.abort());
            return { done: false, value: pattern(firstChunk) };
          }
          return new Promise<IteratorResult<Uint8Array>>(() => undefined);
        },
      }),
    };
    await assert.rejects(store.put("aborted", body, { ...BIG, signal: ac.signal }), {
      code: "CLIENT_ABORTED",
    });
    assert.equal(store.stat("aborted"), undefined);
    assert.deepEqual(await readdir(join(dir, "tmp")), []);
  }
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(store.put("aborted", pattern(10), { ...BIG, signal: ac.signal }), {
    code: "CLIENT_ABORTED",
  });
  assert.equal(store.stats().objects, 0);
});

void test("group commit: concurrent puts share fsyncs and are all durable", async (t) => {
  const dir = await tempDir(t);
  const store = await storeFor(t, dir);
  const batches: number[] = [];
  const onCommit = (m: unknown): void => {
    batches.push((m as { records: number }).records);
  };
  subscribe("backpack:storage:commit", onCommit);
  t.after(() => unsubscribe("backpack:storage:commit", onCommit));
  const n = 300;
  await Promise.all(Array.from({ length: n }, (_, i) => store.put(`k${i}`, pattern(100 + i, i), BIG)));
  assert.equal(
    batches.reduce((a, b) => a + b, 0),
    n,
  );
  assert.ok(batches.length < n / 10, `${batches.length} commits for ${n} concurrent puts`);
  await store.close();
  const again = await storeFor(t, dir);
  for (let i = 0; i < n; i++) assert.ok((await readAll(again, `k${i}`)).equals(pattern(100 + i, i)));
});

void test("a closed store refuses work; close is idempotent; a second open of the dir is refused", async (t) => {
  const dir = await tempDir(t);
  const store = await storeFor(t, dir);
  await assert.rejects(openStore({ dir }), { code: "UNAVAILABLE" });
  await store.put("a", Buffer.from("1"), BIG);
  await Promise.all([store.close(), store.close()]);
  await assert.rejects(store.put("b", Buffer.from("2"), BIG), { code: "SHUTTING_DOWN" });
  const again = await storeFor(t, dir);
  assert.equal((await readAll(again, "a")).toString(), "1");
});

void test("close waits for puts in flight; sync none still round-trips through a clean close", async (t) => {
  const dir = await tempDir(t);
  const store = await openStore({ dir, sync: "none" });
  const puts = Array.from({ length: 50 }, (_, i) => store.put(`k${i}`, pattern(3000, i), BIG));
  const closed = store.close();
  const late = store.put("late", pattern(1), BIG);
  await assert.rejects(late, { code: "SHUTTING_DOWN" });
  await Promise.all(puts);
  await closed;
  await assert.rejects(store.read("k1"), { code: "SHUTTING_DOWN" });
  const again = await storeFor(t, dir);
  for (let i = 0; i < 50; i++) assert.ok((await readAll(again, `k${i}`)).equals(pattern(3000, i)));
  assert.equal(again.stat("late"), undefined);
});

void test("invalid options are refused with every problem named", async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(
    openStore({ dir, sync: "full" as "batch", volumeMaxBytes: -1, compactGarbageRatio: 2 }),
    (err: unknown) =>
      hasCode(err, "INVALID_ARGUMENT") && /sync/.test(String(err)) && /volumeMaxBytes/.test(String(err)),
  );
});

void test("readSmall answers records up to 64 KiB synchronously, larger ones by promise; damage is refused", async (t) => {
  const dir = await tempDir(t);
  // No read cache: the damaged record below was read before, and must be read from the disk again.
  const store = await storeFor(t, dir, { readCacheBytes: 0 });
  const small = pattern(1000, 41);
  const edge = pattern(64 * 1024, 42);
  const over = pattern(64 * 1024 + 1, 43);
  await store.put("small", small, BIG);
  await store.put("edge", edge, BIG);
  await store.put("over", over, BIG);
  for (const [key, data] of [
    ["small", small],
    ["edge", edge],
  ] as const) {
    const r = store.readSmall(key);
    assert.ok(!(r instanceof Promise), `${key} answered synchronously`);
    assert.ok(r.body.data.equals(data));
  }
  const ranged = store.readSmall("small", { start: 10, end: 20 });
  assert.ok(!(ranged instanceof Promise));
  assert.ok(ranged.body.data.equals(small.subarray(10, 20)));
  const later = store.readSmall("over");
  assert.ok(later instanceof Promise);
  assert.ok((await bodyBytes((await later).body)).equals(over));
  assert.throws(() => store.readSmall("absent"), { code: "NOT_FOUND" });
  assert.throws(() => store.readSmall("small", { start: 5, end: 2000 }), { code: "RANGE_NOT_SATISFIABLE" });

  // Flip one byte of the small record's body on disk: never served, counted.
  await flipOnDisk(dir, small.subarray(0, 64), 500);
  assert.throws(() => store.readSmall("small"), { code: "CHECKSUM_MISMATCH" });
  await assert.rejects(store.read("small"), { code: "CHECKSUM_MISMATCH" });
  assert.equal(store.stats().checksumErrors, 1, "one damaged record, quarantined once");
  assert.deepEqual(store.stats().readCache, { hits: 0, misses: 0, bytes: 0 });
});

void test("a background read is answered from the read cache on a hit but adds nothing to it", async (t) => {
  const dir = await tempDir(t);
  const store = await storeFor(t, dir, { readCacheBytes: 1 << 20 });
  const body = pattern(3000, 61);
  await store.put("bg", body, BIG);
  const background = { background: true };
  const first = await store.read("bg", undefined, background);
  assert.ok(first.body.kind === "buffer" && first.body.data.equals(body));
  const small = store.readSmall("bg", { start: 10, end: 20 }, background);
  assert.ok(!(small instanceof Promise) && small.body.data.equals(body.subarray(10, 20)));
  assert.deepEqual(store.stats().readCache, { hits: 0, misses: 2, bytes: 0 }, "read from the disk, not kept");
  assert.ok((await readAll(store, "bg")).equals(body));
  const kept = store.stats().readCache;
  assert.ok(kept.bytes > 0, "a client's read is kept");
  const hit = store.readSmall("bg", undefined, background);
  assert.ok(!(hit instanceof Promise) && hit.body.data.equals(body));
  assert.deepEqual(store.stats().readCache, { ...kept, hits: kept.hits + 1 }, "a hit is a hit");
});

void test("the read cache answers verified small records from memory and is never stale", async (t) => {
  const dir = await tempDir(t);
  const store = await storeFor(t, dir, { readCacheBytes: 1 << 20, volumeMaxBytes: 256 * 1024 });
  const v1 = pattern(1000, 51);
  await store.put("a", v1, BIG);
  assert.ok((await readAll(store, "a")).equals(v1));
  const first = store.readSmall("a");
  assert.ok(!(first instanceof Promise) && first.body.data.equals(v1));
  assert.deepEqual(store.stats().readCache, { hits: 1, misses: 1, bytes: store.stats().readCache.bytes });
  const ranged = store.readSmall("a", { start: 100, end: 110 });
  assert.ok(!(ranged instanceof Promise) && ranged.body.data.equals(v1.subarray(100, 110)));
  // Records up to 1 MiB are kept (read and verified once); larger ones always come from the disk.
  const medium = pattern(200 * 1024, 53);
  await store.put("medium", medium, BIG);
  assert.ok((await readAll(store, "medium")).equals(medium));
  const hitsBefore = store.stats().readCache.hits;
  const again = store.readSmall("medium", { start: 70_000, end: 70_100 });
  assert.ok(!(again instanceof Promise) && again.body.data.equals(medium.subarray(70_000, 70_100)));
  assert.equal(store.stats().readCache.hits, hitsBefore + 1);
  const large = pattern((1 << 20) + 1, 54);
  await store.put("large", large, BIG);
  for (let i = 0; i < 2; i++) assert.ok((await readAll(store, "large")).equals(large));
  assert.equal(store.stats().readCache.hits, hitsBefore + 1, "a record over 1 MiB is not cached");
  // read() answered from the cache still lets the event loop turn: a loop of reads does not starve a timer.
  let fired = false;
  setTimeout(() => (fired = true), 0);
  for (let i = 0; i < 10_000 && !fired; i++) await store.read("a");
  assert.ok(fired, "a timer ran while cached reads looped");

  // The cache holds what was verified: damage on disk after that is found when the record is next read from
  // the disk, not served in the meantime (the cached copy is the good one).
  await flipOnDisk(dir, v1.subarray(0, 64), 500);
  assert.ok((await readAll(store, "a")).equals(v1));

  // An overwrite is a new record somewhere else: read from the disk, never the old bytes.
  const v2 = pattern(1000, 52);
  await store.put("a", v2, BIG);
  assert.ok((await readAll(store, "a")).equals(v2));
  await store.delete("a");
  assert.throws(() => store.readSmall("a"), { code: "NOT_FOUND" });

  // Many records: the budget holds; compaction moves records to a new file and reads stay right.
  for (let i = 0; i < 1500; i++) await store.put(`k${i}`, pattern(900, 1000 + i), BIG);
  for (let i = 0; i < 1500; i++) assert.ok((await readAll(store, `k${i}`)).equals(pattern(900, 1000 + i)));
  assert.ok(store.stats().readCache.bytes <= 1 << 20, `cache holds ${store.stats().readCache.bytes} bytes`);
  for (let i = 0; i < 1500; i += 2) await store.delete(`k${i}`);
  await store.compact();
  assert.ok(store.stats().compactions > 0);
  for (let i = 1; i < 1500; i += 2) assert.ok((await readAll(store, `k${i}`)).equals(pattern(900, 1000 + i)));
});
