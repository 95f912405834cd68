import { test } from "node:test";
import assert from "node:assert/strict";
import { IndexTable, type EntryValue } from "../../src/storage/index-table.js";
import { SortedKeys } from "../../src/storage/sorted-keys.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";
import { BIG, storeFor } from "./helpers.js";

/** A SortedKeys over keys held in an array (entry number = index), compared as UTF-8 bytes. */
function model(): { keys: Buffer[]; sorted: SortedKeys } {
  const keys: Buffer[] = [];
  const sorted = new SortedKeys({
    compare: (i, key) => Buffer.compare(keys[i]!, key),
    compareEntries: (a, b) => Buffer.compare(keys[a]!, keys[b]!),
  });
  return { keys, sorted };
}

function random(seed: number): () => number {
  let x = seed;
  return () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x / 2 ** 32;
  };
}

void test("sorted keys: random inserts and removals, in order and ascending, always list in byte order", async () => {
  const { keys, sorted } = model();
  const rnd = random(7);
  const live = new Set<number>();
  // Random keys, then ascending ones (the append path), with removals between.
  for (let n = 0; n < 6000; n++) {
    const key =
      n < 4000
        ? Buffer.from(`k${Math.floor(rnd() * 1e9)}-${n}`)
        : Buffer.from(`z${String(n).padStart(6, "0")}`);
    keys.push(key);
    sorted.insert(n, key);
    live.add(n);
    if (rnd() < 0.3) {
      const victim = [...live][Math.floor(rnd() * live.size)]!;
      assert.ok(sorted.remove(victim, keys[victim]!));
      live.delete(victim);
    }
  }
  const expected = [...live].sort((a, b) => Buffer.compare(keys[a]!, keys[b]!));
  assert.equal(sorted.size, live.size);
  assert.deepEqual([...sorted.from(undefined, true)], expected);
  // From a key: inclusive and exclusive; from a key that is not there.
  const mid = expected[1234]!;
  assert.deepEqual([...sorted.from(keys[mid], true)], expected.slice(1234));
  assert.deepEqual([...sorted.from(keys[mid], false)], expected.slice(1235));
  assert.deepEqual(
    [...sorted.from(Buffer.from("k5"), true)],
    expected.filter((i) => Buffer.compare(keys[i]!, Buffer.from("k5")) >= 0),
  );
  assert.equal(sorted.remove(mid, Buffer.from("not there")), false);
  // Rebuilt from scratch: the same order.
  await sorted.rebuild([...live], new Set(), () => new Promise((resolve) => setImmediate(resolve)));
  assert.deepEqual([...sorted.from(undefined, true)], expected);
});

void test("listKeys: by prefix and after, in UTF-8 byte order, with deletes, across a restart", async (t) => {
  const dir = await tempDir(t);
  let store = await storeFor(t, dir);
  const names = ["a/1", "a/2", "a/10", "a/\u00e9", "a/\u{1f600}", "a/\uffff", "b/1", "a"];
  for (const k of names)
    await store.put(k, Buffer.from(k), { ...BIG, headers: { "x-backpack-meta-k": "v" } });
  await store.delete("a/2");
  const check = async (): Promise<void> => {
    const all = await store.listKeys("a/", undefined, 100);
    // Byte order of UTF-8: U+FFFF (ef bf bf) sorts before U+1F600 (f0 9f 98 80), unlike UTF-16 order.
    assert.deepEqual(
      all.entries.map((e) => e.key),
      ["a/1", "a/10", "a/2", "a/\u00e9", "a/\uffff", "a/\u{1f600}"],
    );
    assert.equal(all.more, false);
    const deleted = all.entries.find((e) => e.key === "a/2");
    assert.equal(deleted?.deleted, true, "a delete is listed, so a merge can let it win");
    assert.deepEqual(all.entries[0]?.headers, { "x-backpack-meta-k": "v" });
    const page = await store.listKeys("a/", "a/10", 2);
    assert.deepEqual(
      page.entries.map((e) => e.key),
      ["a/2", "a/\u00e9"],
    );
    assert.equal(page.more, true);
    assert.deepEqual((await store.listKeys("a/", "a/\u{1f600}", 10)).entries, []);
    // An `after` before the prefix starts at the prefix.
    assert.deepEqual(
      (await store.listKeys("b/", "a", 10)).entries.map((e) => e.key),
      ["b/1"],
    );
    assert.deepEqual(
      (await store.listKeys("", undefined, 1)).entries.map((e) => e.key),
      ["a"],
    );
  };
  await check();
  await store.close();
  store = await storeFor(t, dir);
  await check();
});

void test("listKeys: a delete past its grace period leaves the key order with its index entry", async (t) => {
  const store = await storeFor(t, await tempDir(t), { tombstoneGraceMs: 1 });
  for (const k of ["x/1", "x/2", "x/3"]) await store.put(k, Buffer.from(k), BIG);
  await store.delete("x/2");
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(store.expireTombstones(), 1);
  assert.deepEqual(
    (await store.listKeys("x/", undefined, 10)).entries.map((e) => e.key),
    ["x/1", "x/3"],
  );
  await store.put("x/2", Buffer.from("again"), BIG);
  assert.deepEqual(
    (await store.listKeys("x/", undefined, 10)).entries.map((e) => e.key),
    ["x/1", "x/2", "x/3"],
  );
});

void test("the index's key order is built in slices while keys are inserted and removed (entry numbers reused): it lists exactly the live keys, in order", async () => {
  const index = new IndexTable(99);
  const rnd = random(11);
  const value = (n: number): EntryValue => ({
    volume: 1,
    offset: n,
    size: 1,
    bodyCrc: 0,
    version: { stamp: n + 1, origin: 0 },
    contentType: undefined,
    tombstone: false,
  });
  const live = new Set<string>();
  let n = 0;
  const add = (): void => {
    const key = `k${Math.floor(rnd() * 1e9)}-${n++}`;
    index.insert(Buffer.from(key), value(n));
    live.add(key);
  };
  const removeOne = (): void => {
    const key = [...live][Math.floor(rnd() * live.size)]!;
    assert.ok(index.remove(Buffer.from(key)));
    live.delete(key);
  };
  for (let i = 0; i < 40_000; i++) add();
  let pauses = 0;
  const order = await index.sorted(async () => {
    pauses++;
    // Between slices the index changes: removals free entry numbers that the inserts after them reuse.
    for (let i = 0; i < 20; i++) (rnd() < 0.5 ? removeOne : add)();
    await new Promise((resolve) => setImmediate(resolve));
  });
  assert.ok(pauses >= 5, `built in ${pauses} slices`);
  const listed = [...order.from(undefined, true)].map((i) => Buffer.from(index.keyOf(i)).toString());
  const expected = [...live].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  assert.deepEqual(listed, expected);
  // From then on it follows every change at once.
  add();
  removeOne();
  const again = [...(await index.sorted(() => Promise.resolve())).from(undefined, true)];
  assert.deepEqual(
    again.map((i) => Buffer.from(index.keyOf(i)).toString()),
    [...live].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
  );
});

void test("listKeys: a first listing that the key order is not built in time for answers OVERLOADED, and the build goes on", async (t) => {
  const store = await storeFor(t, await tempDir(t), { keyOrderWaitMs: 0, sync: "none" });
  const writes: Promise<unknown>[] = [];
  for (let i = 0; i < 20_000; i++) writes.push(store.put(`k/${(i * 7919) % 20_000}`, Buffer.from("x"), BIG));
  await Promise.all(writes);
  await assert.rejects(store.listKeys("k/", undefined, 10), { code: "OVERLOADED", retryAfterSec: 1 });
  const page = await waitFor(async () => await store.listKeys("k/", undefined, 3).catch(() => undefined), {
    timeoutMs: 30_000,
    what: "the key order",
  });
  assert.deepEqual(
    page.entries.map((e) => e.key),
    ["k/0", "k/1", "k/10"],
  );
});
