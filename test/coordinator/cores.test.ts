import { seededRandom } from "../../src/common/random.js";
import { test } from "node:test";
import assert from "node:assert/strict";
import { chooseShard, orderServers, shuffle } from "../../src/coordinator/shard-chooser.js";
import { UsageTracker } from "../../src/coordinator/usage-tracker.js";
import { NodeHealth } from "../../src/coordinator/node-health.js";
import type { ShardInfo } from "../../src/cluster/types.js";

function shard(id: string, over: Partial<ShardInfo> = {}): ShardInfo {
  return { id, servers: ["a", "b"], enabled: true, capacity: 1000, used: 0, ...over };
}

const seeded = seededRandom;

void test("chooseShard weights by free bytes, not by free ratio", () => {
  // Both 90 % free; the large one has 10× the free bytes and must get ~10× the uploads.
  const small = { shard: shard("s", { capacity: 1000 }), free: 900 };
  const large = { shard: shard("l", { capacity: 10_000 }), free: 9000 };
  const random = seeded(1);
  const counts = { s: 0, l: 0 };
  for (let i = 0; i < 20_000; i++) counts[chooseShard([small, large], 1, random).id as "s" | "l"]++;
  const ratio = counts.l / counts.s;
  assert.ok(ratio > 8 && ratio < 12.5, `large/small = ${ratio}`);
});

void test("chooseShard skips disabled, full and too-small shards", () => {
  const random = seeded(2);
  const c = [
    { shard: shard("off", { enabled: false }), free: 10_000 },
    { shard: shard("full"), free: 0 },
    { shard: shard("small"), free: 50 },
    { shard: shard("ok"), free: 500 },
  ];
  for (let i = 0; i < 200; i++) assert.equal(chooseShard(c, 100, random).id, "ok");
  // A zero-byte upload still avoids a full shard.
  for (let i = 0; i < 200; i++) assert.notEqual(chooseShard(c, 0, random).id, "full");
});

void test("chooseShard errors: NO_WRITABLE_SHARDS and NO_SPACE", () => {
  assert.throws(() => chooseShard([], 1, Math.random), {
    code: "NO_WRITABLE_SHARDS",
    message: "No writable shards found!",
  });
  assert.throws(() => chooseShard([{ shard: shard("x", { enabled: false }), free: 10 }], 1, Math.random), {
    code: "NO_WRITABLE_SHARDS",
  });
  assert.throws(() => chooseShard([{ shard: shard("x", { servers: [] }), free: 10 }], 1, Math.random), {
    code: "NO_WRITABLE_SHARDS",
  });
  assert.throws(() => chooseShard([{ shard: shard("x"), free: 10 }], 11, Math.random), { code: "NO_SPACE" });
});

void test("chooseShard survives a broken random source", () => {
  const c = [
    { shard: shard("a"), free: 5 },
    { shard: shard("b"), free: 5 },
  ];
  for (const r of [0, 0.999999999, 1, 2, -1, Number.NaN])
    assert.ok(["a", "b"].includes(chooseShard(c, 1, () => r).id));
});

void test("orderServers puts suspect nodes last and keeps every node", () => {
  const random = seeded(3);
  const seenFirst = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const order = orderServers(["1", "2", "3", "4"], (s) => s === "2", random);
    assert.equal(order.length, 4);
    assert.equal(order[3], "2");
    seenFirst.add(order[0] as string);
  }
  assert.deepEqual([...seenFirst].sort(), ["1", "3", "4"]);
  assert.deepEqual(shuffle([], random), []);
});

void test("UsageTracker: reservations count against free space; commit counts once; release counts nothing", () => {
  const u = new UsageTracker();
  const r1 = u.reserve("1", 100);
  const r2 = u.reserve("1", 50);
  assert.equal(u.outstanding("1"), 150);
  r1.commit();
  r1.commit();
  r1.release();
  r2.release();
  r2.commit();
  assert.equal(u.outstanding("1"), 100);
  assert.equal(u.unflushed("1"), 100);
  assert.throws(() => u.reserve("1", Number.NaN), RangeError);
  assert.throws(() => u.reserve("1", -1), RangeError);
  assert.throws(() => u.reserve("1", 1.5), RangeError);
});

void test("UsageTracker: a failed flush is retried with what came in meanwhile, never lost or doubled", () => {
  const u = new UsageTracker();
  u.reserve("1", 10).commit();
  u.reserve("2", 5).commit();
  const b1 = u.takeBatch();
  assert.deepEqual(b1, { "1": 10, "2": 5 });
  assert.equal(u.takeBatch(), undefined, "one flush at a time");
  // While the batch is in flight the map may already show it: reported usage leaves it out, free space keeps it.
  assert.equal(u.unflushed("1"), 0);
  assert.equal(u.outstanding("1"), 10);
  u.reserve("1", 7).commit();
  assert.equal(u.outstanding("1"), 17);
  u.settle(b1, false);
  const b2 = u.takeBatch();
  assert.deepEqual(b2, { "1": 17, "2": 5 });
  u.settle(b2, true);
  assert.equal(u.dirty, false);
  assert.equal(u.outstanding("1"), 0);
  assert.equal(u.takeBatch(), undefined);
  u.remove("1", 4);
  assert.deepEqual(u.takeBatch(), { "1": -4 });
});

void test("NodeHealth: a failure makes a node suspect until a success or suspectMs pass", () => {
  let now = 1000;
  const h = new NodeHealth(500, () => now);
  assert.equal(h.isSuspect("a"), false);
  h.recordFailure("a");
  assert.equal(h.isSuspect("a"), true);
  assert.deepEqual(h.suspects(), ["a"]);
  now += 499;
  assert.equal(h.isSuspect("a"), true);
  now += 1;
  assert.equal(h.isSuspect("a"), false);
  h.recordFailure("a");
  h.recordSuccess("a");
  assert.equal(h.isSuspect("a"), false);
  h.setDown("b", true);
  now += 10_000;
  assert.equal(h.isSuspect("b"), true);
  h.setDown("b", false);
  assert.equal(h.isSuspect("b"), false);
});
