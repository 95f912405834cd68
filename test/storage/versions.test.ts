import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { hasCode } from "../../src/common/errors.js";
import { formatVersion, type Version } from "../../src/common/version.js";
import type { Store } from "../../src/storage/types.js";
import { tempDir } from "../helpers/tmp.js";
import { BIG, pattern, readAll, storeFor } from "./helpers.js";

const v = (stamp: number, origin = 1): Version => ({ stamp: 1_800_000_000_000_000 + stamp, origin });

/** Expects STALE_VERSION naming the version the store holds. */
async function refusedAsStale(p: Promise<unknown>, current: Version): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(hasCode(err, "STALE_VERSION"), String(err));
    assert.equal((err as { details?: { current?: string } }).details?.current, formatVersion(current));
    return true;
  });
}

/** Reopens the store from the volumes alone (no checkpoint): what replay decides. */
async function reopen(
  t: Parameters<typeof storeFor>[0],
  dir: string,
  store: Store,
  opts = {},
): Promise<Store> {
  await store.close();
  await rm(join(dir, "index.ckpt"), { force: true });
  return storeFor(t, dir, opts);
}

void test("a write or delete older than (or equal to) what the store holds is refused; newer ones win", async (t) => {
  const dir = await tempDir(t);
  const store = await storeFor(t, dir);
  const info = await store.put("k", pattern(100, 1), { ...BIG, version: v(10) });
  assert.deepEqual(info.version, v(10));
  assert.deepEqual(store.stat("k")?.version, v(10));
  await refusedAsStale(store.put("k", pattern(100, 2), { ...BIG, version: v(9) }), v(10));
  await refusedAsStale(store.put("k", pattern(100, 2), { ...BIG, version: v(10) }), v(10));
  // Same stamp, lower origin: older.
  await refusedAsStale(store.put("k", pattern(100, 2), { ...BIG, version: v(10, 0) }), v(10));
  await refusedAsStale(store.delete("k", { version: v(5) }), v(10));
  assert.ok((await readAll(store, "k")).equals(pattern(100, 1)), "nothing older was stored");
  await store.put("k", pattern(100, 3), { ...BIG, version: v(10, 2) });
  assert.ok((await readAll(store, "k")).equals(pattern(100, 3)));
  assert.equal(await store.delete("k", { version: v(20) }), true);
  assert.equal(store.stat("k"), undefined);
  assert.deepEqual(store.held("k"), { version: v(20), deleted: true });
  await refusedAsStale(store.put("k", pattern(100, 4), { ...BIG, version: v(19) }), v(20));
  assert.equal(store.stat("k"), undefined, "a late copy of an older version does not bring the file back");
  await store.put("k", pattern(100, 5), { ...BIG, version: v(21) });
  assert.ok((await readAll(store, "k")).equals(pattern(100, 5)), "a write newer than the delete is stored");
  assert.equal(store.stats().objects, 1);
  assert.equal(store.stats().tombstones, 0);
});

void test("a versioned delete of an absent key leaves a tombstone that survives restarts and compaction", async (t) => {
  const dir = await tempDir(t);
  const opts = { volumeMaxBytes: 4096, compactGarbageRatio: 0.1 };
  let store = await storeFor(t, dir, opts);
  assert.equal(await store.delete("never-here", { version: v(50) }), false);
  assert.deepEqual(store.held("never-here"), { version: v(50), deleted: true });
  assert.equal(store.stats().tombstones, 1);
  // Fill and overwrite so that the tombstone's volume is sealed and worth compacting.
  for (let i = 0; i < 12; i++) await store.put("filler", pattern(1500, i), BIG);
  await store.compact();
  assert.ok(store.stats().compactions >= 1);
  for (const restart of ["with checkpoint", "without checkpoint"]) {
    if (restart === "with checkpoint") {
      await store.close();
      store = await storeFor(t, dir, opts);
    } else {
      store = await reopen(t, dir, store, opts);
    }
    assert.deepEqual(store.held("never-here"), { version: v(50), deleted: true }, restart);
    await refusedAsStale(store.put("never-here", pattern(10, 1), { ...BIG, version: v(49) }), v(50));
    assert.equal(store.stat("never-here"), undefined, restart);
  }
});

void test("two versions of one key in flight at once: the newer is current whatever the append order, also after replay", async (t) => {
  const dir = await tempDir(t);
  let store = await storeFor(t, dir);
  // Both pass the early check (nothing held yet) and share one batch; the older is appended last.
  const newer = store.put("race", pattern(64, 1), { ...BIG, version: v(2) });
  const older = store.put("race", pattern(64, 2), { ...BIG, version: v(1) });
  await newer;
  await refusedAsStale(older, v(2));
  assert.ok((await readAll(store, "race")).equals(pattern(64, 1)));
  store = await reopen(t, dir, store);
  assert.ok((await readAll(store, "race")).equals(pattern(64, 1)), "replay keeps the newest version");
  assert.deepEqual(store.stat("race")?.version, v(2));
});

void test("writes without a version are stamped newer than anything held, a future version included", async (t) => {
  const dir = await tempDir(t);
  let store = await storeFor(t, dir, { origin: 7 });
  const future = { stamp: Date.now() * 1000 + 3_600_000_000, origin: 9 }; // an hour ahead
  await store.put("k", pattern(10, 1), { ...BIG, version: future });
  const info = await store.put("k", pattern(10, 2), BIG);
  assert.ok(info.version.stamp > future.stamp);
  assert.equal(info.version.origin, 7);
  assert.equal(await store.delete("k"), true);
  assert.equal(await store.delete("k"), false, "an unversioned delete of an absent key writes nothing");
  const held = store.held("k")!;
  assert.ok(held.deleted && held.version.stamp > info.version.stamp);
  store = await reopen(t, dir, store, { origin: 7 });
  const again = await store.put("k", pattern(10, 3), BIG);
  assert.ok(again.version.stamp > held.version.stamp, "the clock starts past every version on disk");
});

void test("tombstones past their grace period are forgotten and compacted away", async (t) => {
  const dir = await tempDir(t);
  const opts = { volumeMaxBytes: 4096, compactGarbageRatio: 0.1, tombstoneGraceMs: 60_000 };
  let store = await storeFor(t, dir, opts);
  const old = { stamp: (Date.now() - 120_000) * 1000, origin: 1 };
  const recent = { stamp: Date.now() * 1000, origin: 1 };
  await store.delete("expired-tombstone-key", { version: old });
  await store.delete("recent", { version: recent });
  assert.equal(store.stats().tombstones, 2);
  assert.equal(store.expireTombstones(), 1);
  assert.equal(store.held("expired-tombstone-key"), undefined);
  assert.deepEqual(store.held("recent"), { version: recent, deleted: true });
  for (let i = 0; i < 12; i++) await store.put("filler", pattern(1500, i), BIG);
  await store.compact();
  store = await reopen(t, dir, store, opts);
  assert.equal(store.held("expired-tombstone-key"), undefined, "not brought back by replay");
  assert.deepEqual(store.held("recent"), { version: recent, deleted: true });
  const names = (await readdir(join(dir, "volumes"))).filter((n) => n.endsWith(".vol"));
  for (const name of names) {
    const bytes = await readFile(join(dir, "volumes", name));
    assert.equal(
      bytes.indexOf("expired-tombstone-key"),
      -1,
      `the expired tombstone's record is gone from ${name}`,
    );
  }
});
