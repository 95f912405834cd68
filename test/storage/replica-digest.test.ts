import { test } from "node:test";
import assert from "node:assert/strict";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Version } from "../../src/common/version.js";
import { bucketOf, DIGEST_BUCKETS } from "../../src/storage/replica-digest.js";
import type { Store } from "../../src/storage/types.js";
import { tempDir } from "../helpers/tmp.js";
import { BIG, flipOnDisk, pattern, storeFor } from "./helpers.js";

const v = (n: number): Version => ({ stamp: 1_800_000_000_000_000 + n, origin: 3 });

/** The buckets whose digests differ between two stores. */
function differing(a: Store, b: Store): number[] {
  const da = a.digest().hashes;
  const db = b.digest().hashes;
  const out: number[] = [];
  for (let i = 0; i < DIGEST_BUCKETS; i++) {
    if (da[2 * i] !== db[2 * i] || da[2 * i + 1] !== db[2 * i + 1]) out.push(i);
  }
  return out;
}

void test("replicas with the same state have the same digests, whatever the order of their writes; one difference shows in one bucket", async (t) => {
  const a = await storeFor(t, await tempDir(t));
  const b = await storeFor(t, await tempDir(t));
  const ops = Array.from({ length: 300 }, (_, i) => i);
  for (const i of ops) await a.put(`k/${i}`, pattern(50 + i, i), { ...BIG, version: v(i) });
  for (const i of ops.reverse()) await b.put(`k/${i}`, pattern(50 + i, i), { ...BIG, version: v(i) });
  await a.delete("gone", { version: v(1000) });
  await b.delete("gone", { version: v(1000) });
  assert.deepEqual(differing(a, b), []);
  assert.equal(a.digest().entries, 301);

  // An older version, a missing key, a missing delete: each shows in its key's bucket only.
  await b.put("k/7", pattern(10, 99), { ...BIG, version: v(2000) });
  assert.deepEqual(differing(a, b), [bucketOf(Buffer.from("k/7"))]);
  await a.put("k/7", pattern(10, 99), { ...BIG, version: v(2000) });
  assert.deepEqual(differing(a, b), []);
  await a.delete("k/8", { version: v(2001) });
  assert.deepEqual(differing(a, b), [bucketOf(Buffer.from("k/8"))]);
});

void test("a bucket lists its keys in key order with version, checksum, size and flags, page by page", async (t) => {
  const store = await storeFor(t, await tempDir(t));
  // Enough keys that some bucket holds several.
  for (let i = 0; i < 20_000; i++)
    await store.put(`f${i}`, Buffer.from(String(i)), { ...BIG, version: v(i) });
  const bucket = bucketOf(Buffer.from("f123"));
  await store.delete("f123", { version: v(50_000) });
  const all: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = store.listBucket(bucket, after, 2);
    all.push(...page.entries.map((e) => e.key));
    for (const e of page.entries) {
      assert.equal(bucketOf(Buffer.from(e.key)), bucket);
      if (e.key === "f123") assert.deepEqual([e.deleted, e.version], [true, v(50_000)]);
      else
        assert.deepEqual(
          [e.deleted, e.damaged, e.size, e.version.stamp],
          [false, false, e.key.length - 1, v(Number(e.key.slice(1))).stamp],
        );
    }
    if (!page.more) break;
    after = page.entries.at(-1)!.key;
  }
  assert.ok(all.length >= 2 && all.includes("f123"));
  assert.deepEqual(
    all,
    [...all].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))),
  );
  assert.equal(new Set(all).size, all.length);
});

void test("digests are rebuilt the same after a restart, from a checkpoint or a full rescan; a damaged record changes its bucket", async (t) => {
  const dir = await tempDir(t);
  let store = await storeFor(t, dir, { readCacheBytes: 0 });
  for (let i = 0; i < 500; i++) await store.put(`p/${i}`, pattern(100, i), { ...BIG, version: v(i) });
  for (let i = 0; i < 50; i++) await store.delete(`p/${i * 3}`, { version: v(1000 + i) });
  const before = store.digest().hashes;
  await store.close();
  store = await storeFor(t, dir, { readCacheBytes: 0 });
  assert.deepEqual(store.digest().hashes, before, "from the checkpoint");
  await store.close();
  await rm(join(dir, "index.ckpt"));
  store = await storeFor(t, dir, { readCacheBytes: 0 });
  assert.deepEqual(store.digest().hashes, before, "from a full rescan");

  await flipOnDisk(dir, pattern(100, 400).subarray(0, 32), 10);
  await assert.rejects(store.read("p/400"), { code: "CHECKSUM_MISMATCH" });
  const bucket = bucketOf(Buffer.from("p/400"));
  const after = store.digest().hashes;
  for (let i = 0; i < DIGEST_BUCKETS; i++) {
    const same = after[2 * i] === before[2 * i] && after[2 * i + 1] === before[2 * i + 1];
    assert.equal(same, i !== bucket, `bucket ${i}`);
  }
  assert.equal(
    store.listBucket(bucket, undefined, 1000).entries.find((e) => e.key === "p/400")?.damaged,
    true,
  );
  await store.close(); // before the temp dir goes: the quarantine list is being written
});
