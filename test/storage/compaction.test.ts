import { test } from "node:test";
import assert from "node:assert/strict";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Store } from "../../src/storage/types.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";
import { BIG, flipOnDisk, pattern, readAll, storeFor } from "./helpers.js";

const volumeFiles = async (dir: string): Promise<string[]> =>
  (await readdir(join(dir, "volumes"))).filter((n) => n.endsWith(".vol")).sort();

/** Checks the store against a model of key → pattern seed (undefined = deleted). */
async function matchesModel(
  store: Store,
  model: Map<string, number | undefined>,
  size: (seed: number) => number,
): Promise<void> {
  let live = 0;
  for (const [key, seed] of model) {
    if (seed === undefined) {
      assert.equal(store.stat(key), undefined, `${key} must stay deleted`);
    } else {
      live++;
      assert.ok(
        (await readAll(store, key)).equals(pattern(size(seed), seed)),
        `${key} must read back as version ${seed}`,
      );
    }
  }
  assert.equal(store.stats().objects, live);
}

void test("volumes roll over at volumeMaxBytes; a record larger than that gets a volume of its own", async (t) => {
  const dir = await tempDir(t);
  const store = await storeFor(t, dir, { volumeMaxBytes: 16 * 1024 });
  for (let i = 0; i < 100; i++) await store.put(`k${i}`, pattern(1000, i), BIG);
  await store.put("huge", pattern(100_000, 7), BIG);
  await store.put("after", pattern(10, 8), BIG);
  assert.ok(store.stats().volumes >= 7, `${store.stats().volumes} volumes`);
  assert.equal((await volumeFiles(dir)).length, store.stats().volumes);
  for (let i = 0; i < 100; i++) assert.ok((await readAll(store, `k${i}`)).equals(pattern(1000, i)));
  assert.ok((await readAll(store, "huge")).equals(pattern(100_000, 7)));
});

void test("compaction reclaims garbage; deleted and overwritten keys never come back, with or without a checkpoint", async (t) => {
  const dir = await tempDir(t);
  const opts = { volumeMaxBytes: 8 * 1024, compactGarbageRatio: 0.3 };
  let store = await storeFor(t, dir, opts);
  const model = new Map<string, number | undefined>();
  const size = (seed: number): number => 200 + (seed % 7) * 100;
  for (let i = 0; i < 150; i++) {
    await store.put(`k${i}`, pattern(size(i), i), BIG);
    model.set(`k${i}`, i);
  }
  for (let i = 0; i < 150; i++) {
    if (i % 3 === 0) {
      await store.delete(`k${i}`);
      model.set(`k${i}`, undefined);
    } else if (i % 3 === 1) {
      await store.put(`k${i}`, pattern(size(1000 + i), 1000 + i), BIG);
      model.set(`k${i}`, 1000 + i);
    }
  }
  const before = store.stats();
  await store.compact();
  const after = store.stats();
  assert.ok(after.compactions > 0);
  // Every sealed volume is now under the threshold (garbage < 0.3 of it, whose live part is live records and
  // at most 50 kept tombstones of 48 bytes); the active volume is at most 8 KiB.
  const bound = (0.3 / 0.7) * (after.liveBytes + 50 * 48) + 8 * 1024;
  assert.ok(
    after.garbageBytes <= bound,
    `garbage ${before.garbageBytes} → ${after.garbageBytes} (bound ${bound})`,
  );
  assert.equal(after.liveBytes, before.liveBytes);
  await matchesModel(store, model, size);
  await store.close();
  store = await storeFor(t, dir, opts);
  await matchesModel(store, model, size);
  await store.close();
  await rm(join(dir, "index.ckpt"));
  store = await storeFor(t, dir, opts);
  await matchesModel(store, model, size);
});

void test("a tombstone past its grace period is kept while an older volume still holds its key, dropped once none does", async (t) => {
  const dir = await tempDir(t);
  // Grace 0: every delete is past its grace period at once, so only the older-volume rule keeps tombstones.
  const opts = { volumeMaxBytes: 4096, compactGarbageRatio: 0.5, tombstoneGraceMs: 0 };
  let store = await storeFor(t, dir, opts);
  // Volume 1: the doomed key among live data (so volume 1 is not worth compacting).
  await store.put("doomed", pattern(100, 1), BIG);
  for (let i = 0; i < 3; i++) await store.put(`keep${i}`, pattern(1000, i), BIG);
  // Volume 2: the tombstone and garbage.
  await store.put("filler", pattern(3000, 5), BIG);
  await store.delete("doomed");
  await store.put("filler", pattern(3000, 6), BIG);
  await store.put("filler", pattern(3000, 7), BIG);
  const volumesBefore = await volumeFiles(dir);
  await store.compact();
  assert.ok(store.stats().compactions >= 1);
  await store.close();
  await rm(join(dir, "index.ckpt"));
  store = await storeFor(t, dir, opts);
  assert.equal(
    store.stat("doomed"),
    undefined,
    "the delete survives a compaction of its volume and a full rescan",
  );
  assert.ok(volumesBefore.length >= 3);
  // Now make volume 1 garbage too: compacting it drops the old record, and then the tombstone may go.
  for (let i = 0; i < 3; i++) await store.delete(`keep${i}`);
  await store.put("roll", pattern(4000, 9), BIG);
  await store.compact();
  await store.compact();
  await store.close();
  await rm(join(dir, "index.ckpt"));
  store = await storeFor(t, dir, opts);
  assert.equal(store.stat("doomed"), undefined);
  for (let i = 0; i < 3; i++) assert.equal(store.stat(`keep${i}`), undefined);
  assert.ok((await readAll(store, "filler")).equals(pattern(3000, 7)));
  assert.ok(!(await volumeFiles(dir)).includes("00000001.vol"), "volume 1 emptied and removed");
});

void test("compaction runs online: concurrent reads, overwrites and deletes stay correct", async (t) => {
  const dir = await tempDir(t);
  const opts = { volumeMaxBytes: 32 * 1024, compactGarbageRatio: 0.2 };
  let store = await storeFor(t, dir, opts);
  const size = (seed: number): number => 100 + (seed % 13) * 150;
  const model = new Map<string, number | undefined>();
  for (let i = 0; i < 300; i++) {
    await store.put(`k${i}`, pattern(size(i), i), BIG);
    model.set(`k${i}`, i);
  }
  // Make garbage everywhere, then compact while writers and readers run.
  for (let i = 0; i < 300; i += 2) {
    await store.put(`k${i}`, pattern(size(i + 5000), i + 5000), BIG);
    model.set(`k${i}`, i + 5000);
  }
  const versions = new Map([...model].map(([k, v]) => [k, new Set([v!, Number(k.slice(1))])]));
  let seed = 10_000;
  let stop = false;
  const writer = async (w: number): Promise<void> => {
    for (let n = 0; !stop || n < 20; n++) {
      const key = `k${(n * 7 + w * 31) % 300}`;
      if (n % 4 === 0) {
        await store.delete(key);
        model.set(key, undefined);
      } else {
        const s = seed++;
        versions.get(key)!.add(s);
        await store.put(key, pattern(size(s), s), BIG);
        model.set(key, s);
      }
    }
  };
  const reader = async (): Promise<number> => {
    let reads = 0;
    while (!stop) {
      for (const [key, s] of model) {
        if (s === undefined) continue;
        try {
          const data = await readAll(store, key);
          // A concurrent writer may be replacing it: the bytes must be exactly one of the versions written.
          assert.ok(
            [...versions.get(key)!].some((v) => data.equals(pattern(size(v), v))),
            key,
          );
          reads++;
        } catch (err) {
          if ((err as { code?: string }).code !== "NOT_FOUND") throw err;
        }
      }
    }
    return reads;
  };
  const readers = [reader(), reader()];
  const writers = [writer(0), writer(1), writer(2)];
  await store.compact();
  stop = true;
  await Promise.all(writers);
  const reads = (await Promise.all(readers)).reduce((a, b) => a + b, 0);
  assert.ok(reads > 0);
  assert.ok(store.stats().compactions > 0);
  assert.equal(store.stats().checksumErrors, 0);
  await matchesModel(store, model, size);
  await store.close();
  await rm(join(dir, "index.ckpt"));
  store = await storeFor(t, dir, opts);
  await matchesModel(store, model, size);
});

void test("compaction drops damaged garbage unread and leaves a volume with a damaged live record as it is", async (t) => {
  const dir = await tempDir(t);
  const opts = { volumeMaxBytes: 8 * 1024, compactGarbageRatio: 0.3, readCacheBytes: 0 };
  const store = await storeFor(t, dir, opts);
  // Volume 1: "old" (soon garbage) and "live"; later volumes: the new version of "old" and filler.
  const old = pattern(3000, 61);
  const live = pattern(3000, 62);
  await store.put("old", old, BIG);
  await store.put("live", live, BIG);
  for (let i = 0; i < 4; i++) await store.put(`filler${i}`, pattern(3000, 70 + i), BIG);
  await store.put("old", pattern(3000, 63), BIG);
  await flipOnDisk(dir, old.subarray(0, 64), 1000);
  await store.compact();
  assert.ok(store.stats().compactions > 0, "the volume with damaged garbage was compacted");
  assert.ok((await readAll(store, "live")).equals(live));
  assert.ok((await readAll(store, "old")).equals(pattern(3000, 63)));

  // A damaged live record in a volume worth compacting: the volume is left as it is (the record is never
  // dropped), and the damage is refused on read rather than served.
  // (A store of its own, so that "x" and "damaged" share the first volume.)
  const dir2 = await tempDir(t);
  const store2 = await storeFor(t, dir2, opts);
  const damaged = pattern(3000, 64);
  await store2.put("x", pattern(3000, 65), BIG);
  await store2.put("damaged", damaged, BIG);
  for (let i = 0; i < 2; i++) await store2.put(`roll${i}`, pattern(3000, 80 + i), BIG);
  await flipOnDisk(dir2, damaged.subarray(0, 64), 1000);
  await store2.delete("x");
  const before = store2.stats();
  await store2.compact();
  assert.equal(store2.stats().compactions, before.compactions, "the volume was not rewritten");
  assert.equal(store2.stats().garbageBytes, before.garbageBytes);
  await assert.rejects(readAll(store2, "damaged"), { code: "CHECKSUM_MISMATCH" });
  assert.ok(store2.stat("damaged"), "the damaged record is still indexed: a replica can repair it");
  assert.equal(store2.stat("x"), undefined);
});

void test("compaction and the scrub wait for the node's turn at background work, and a close ends the wait", async (t) => {
  const dir = await tempDir(t);
  let open = false;
  let waits = 0;
  const turn = async (signal: AbortSignal): Promise<void> => {
    waits++;
    while (!open && !signal.aborted) await new Promise((resolve) => setTimeout(resolve, 10));
  };
  const store = await storeFor(t, dir, {
    volumeMaxBytes: 8 * 1024,
    compactGarbageRatio: 0.3,
    scrubBytesPerSec: 10_000_000,
    scrubEveryMs: 1000,
    turn,
  });
  for (let i = 0; i < 60; i++) await store.put(`k${i}`, pattern(500, i), BIG);
  for (let i = 0; i < 60; i += 2) await store.delete(`k${i}`);
  const compaction = store.compact();
  await waitFor(() => waits >= 2, { what: "compaction and scrub waiting for their turn" });
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(store.stats().compactions, 0, "no compaction outside the node's turn");
  assert.equal(store.stats().scrub.bytesVerified, 0, "no scrub outside the node's turn");
  open = true;
  await compaction;
  assert.ok(store.stats().compactions > 0);
  await waitFor(() => store.stats().scrub.bytesVerified > 0, {
    what: "the scrub once it is the node's turn",
  });

  // A store closing while its work waits for a turn closes at once.
  open = false;
  const other = await storeFor(t, await tempDir(t), {
    volumeMaxBytes: 8 * 1024,
    compactGarbageRatio: 0.3,
    turn,
  });
  for (let i = 0; i < 60; i++) await other.put(`k${i}`, pattern(500, i), BIG);
  for (let i = 0; i < 60; i += 2) await other.delete(`k${i}`);
  const pending = other.compact();
  await waitFor(() => waits >= 4, { what: "the second store's compaction waiting" });
  await other.close();
  await pending;
  assert.equal(other.stats().compactions, 0);
});
