import { test } from "node:test";
import assert from "node:assert/strict";
import { SortedKeys } from "../../src/storage/sorted-keys.js";
import { tempDir } from "../helpers/tmp.js";
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

void test("sorted keys: random inserts and removals, in order and ascending, always list in byte order", () => {
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
  sorted.rebuild([...live]);
  assert.deepEqual([...sorted.from(undefined, true)], expected);
});

void test("listKeys: by prefix and after, in UTF-8 byte order, with deletes, across a restart", async (t) => {
  const dir = await tempDir(t);
  let store = await storeFor(t, dir);
  const names = ["a/1", "a/2", "a/10", "a/\u00e9", "a/\u{1f600}", "a/\uffff", "b/1", "a"];
  for (const k of names)
    await store.put(k, Buffer.from(k), { ...BIG, headers: { "x-backpack-meta-k": "v" } });
  await store.delete("a/2");
  const check = (): void => {
    const all = store.listKeys("a/", undefined, 100);
    // Byte order of UTF-8: U+FFFF (ef bf bf) sorts before U+1F600 (f0 9f 98 80), unlike UTF-16 order.
    assert.deepEqual(
      all.entries.map((e) => e.key),
      ["a/1", "a/10", "a/2", "a/\u00e9", "a/\uffff", "a/\u{1f600}"],
    );
    assert.equal(all.more, false);
    const deleted = all.entries.find((e) => e.key === "a/2");
    assert.equal(deleted?.deleted, true, "a delete is listed, so a merge can let it win");
    assert.deepEqual(all.entries[0]?.headers, { "x-backpack-meta-k": "v" });
    const page = store.listKeys("a/", "a/10", 2);
    assert.deepEqual(
      page.entries.map((e) => e.key),
      ["a/2", "a/\u00e9"],
    );
    assert.equal(page.more, true);
    assert.deepEqual(store.listKeys("a/", "a/\u{1f600}", 10).entries, []);
    // An `after` before the prefix starts at the prefix.
    assert.deepEqual(
      store.listKeys("b/", "a", 10).entries.map((e) => e.key),
      ["b/1"],
    );
    assert.deepEqual(
      store.listKeys("", undefined, 1).entries.map((e) => e.key),
      ["a"],
    );
  };
  check();
  await store.close();
  store = await storeFor(t, dir);
  check();
});

void test("listKeys: a delete past its grace period leaves the key order with its index entry", async (t) => {
  const store = await storeFor(t, await tempDir(t), { tombstoneGraceMs: 1 });
  for (const k of ["x/1", "x/2", "x/3"]) await store.put(k, Buffer.from(k), BIG);
  await store.delete("x/2");
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(store.expireTombstones(), 1);
  assert.deepEqual(
    store.listKeys("x/", undefined, 10).entries.map((e) => e.key),
    ["x/1", "x/3"],
  );
  await store.put("x/2", Buffer.from("again"), BIG);
  assert.deepEqual(
    store.listKeys("x/", undefined, 10).entries.map((e) => e.key),
    ["x/1", "x/2", "x/3"],
  );
});
