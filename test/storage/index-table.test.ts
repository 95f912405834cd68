import { test } from "node:test";
import assert from "node:assert/strict";
import { IndexTable, type EntryValue } from "../../src/storage/index-table.js";
import { prng } from "./fixtures/crash-body.js";

const value = (n: number, contentType?: string): EntryValue => ({
  volume: n % 97,
  offset: n * 4096 + 2 ** 40, // past 32 bits on purpose
  size: n * 3 + 2 ** 33,
  bodyCrc: (n * 2654435761) >>> 0,
  version: { stamp: 1_700_000_000_000_000 + n, origin: n & 0xffff },
  contentType,
  tombstone: n % 5 === 0,
});

void test("the index agrees with a Map through random inserts, updates and removals", () => {
  const rnd = prng(42);
  // A tiny seed table so that it resizes many times, and few distinct keys so that removals hit probe runs.
  const index = new IndexTable(12345, 8);
  const model = new Map<string, number>();
  const types = [undefined, "text/plain", "image/png", "application/json; charset=utf-8"];
  for (let step = 0; step < 60_000; step++) {
    const key = `key/${Math.floor(rnd() * 5000)}/${"é".repeat(Math.floor(rnd() * 4))}`;
    const k = Buffer.from(key);
    const i = index.find(k);
    assert.equal(i >= 0, model.has(key));
    if (rnd() < 0.35) {
      assert.equal(index.remove(k), model.delete(key));
    } else {
      const n = step;
      const type = types[n % types.length];
      if (i >= 0) index.update(i, value(n, type));
      else index.insert(k, value(n, type));
      model.set(key, n);
    }
  }
  assert.equal(index.count, model.size);
  assert.equal(index.tombstones, [...model.values()].filter((n) => value(n).tombstone).length);
  for (const [key, n] of model) {
    const i = index.find(Buffer.from(key));
    assert.ok(i >= 0, key);
    const v = value(n);
    assert.equal(index.volumeOf(i), v.volume);
    assert.equal(index.offsetOf(i), v.offset);
    assert.equal(index.sizeOf(i), v.size);
    assert.equal(index.crcOf(i), v.bodyCrc);
    assert.deepEqual(index.versionOf(i), v.version);
    assert.equal(index.isTombstone(i), v.tombstone);
    assert.equal(index.contentTypeOf(i), types[n % types.length]);
    assert.equal(Buffer.from(index.keyOf(i)).toString(), key);
  }
  let seen = 0;
  index.forEach(() => seen++);
  assert.equal(seen, model.size);
  // The digests and bucket lists kept current through every insert, update and removal equal a fresh build.
  const kept = index.digest.slice();
  const sizes = index.bucketSize.slice();
  index.markDamaged(index.find(Buffer.from([...model.keys()][0]!)));
  const damaged = index.digest.slice();
  index.rebuildBuckets();
  assert.deepEqual(index.digest, damaged);
  assert.notDeepEqual(kept, damaged, "a damaged mark changes the digest");
  assert.deepEqual(index.bucketSize, sizes);
  let listed = 0;
  for (let b = 0; b < index.bucketHead.length; b++) listed += index.bucketEntries(b).length;
  assert.equal(listed, model.size);
});

void test("freed key bytes are reclaimed and more content types than ids still round-trip", () => {
  const index = new IndexTable(1);
  const long = (n: number): Buffer => Buffer.from(`${n}-`.padEnd(1000, "x"));
  for (let round = 0; round < 6; round++) {
    for (let n = 0; n < 5000; n++) index.insert(long(n), value(n));
    for (let n = 0; n < 5000; n++) assert.ok(index.remove(long(n)));
  }
  assert.equal(index.count, 0);
  assert.ok(index.arena.chunks.length <= 12, `${index.arena.chunks.length} arena chunks after churn`);
  for (let n = 0; n < 70_000; n++) index.insert(Buffer.from(`t${n}`), value(n, `type/${n}`));
  for (const n of [0, 65_533, 65_534, 69_999]) {
    assert.equal(index.contentTypeOf(index.find(Buffer.from(`t${n}`))), `type/${n}`);
  }
});
