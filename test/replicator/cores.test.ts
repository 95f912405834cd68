import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffMs } from "../../src/queue/backoff.js";
import { decodeTask, newTaskId } from "../../src/queue/task.js";
import { RateMeter } from "../../src/replicator/rate.js";
import { TargetGate } from "../../src/replicator/target-gate.js";

void test("backoff: exponential bound, full jitter, capped, never 0", () => {
  assert.equal(
    backoffMs(1, 500, 60_000, () => 0.999999),
    499,
  );
  assert.equal(
    backoffMs(3, 500, 60_000, () => 0.5),
    1000,
  );
  assert.equal(
    backoffMs(30, 500, 60_000, () => 0.5),
    30_000,
  );
  assert.ok(backoffMs(1, 500, 60_000, () => 0) > 0);
});

void test("target gate: per-target limit, pause doubling to the cap, reset on success", () => {
  const g = new TargetGate(2, 100, 350);
  assert.ok(g.tryEnter("a") && g.tryEnter("a"));
  assert.equal(g.tryEnter("a"), false);
  assert.ok(g.tryEnter("b"));
  g.leave("a");
  assert.ok(g.tryEnter("a"));
  assert.equal(g.markDown("a", 1000), 100);
  assert.equal(g.markDown("a", 1050), 50, "failures during a pause do not extend it");
  assert.equal(g.downFor("a", 1050), 50);
  assert.deepEqual(g.downTargets(), ["a"]);
  assert.equal(g.markDown("a", 1100), 200);
  assert.equal(g.markDown("a", 1300), 350);
  assert.equal(g.markDown("a", 1650), 350);
  assert.deepEqual(g.downTargets(), ["a"], "down between its pauses too, until it answers");
  g.markUp("a");
  assert.deepEqual(g.downTargets(), []);
  assert.equal(g.downFor("a", 1700), 0);
  assert.equal(g.markDown("a", 1700), 100);
});

void test("rate meter: events per second over the window", () => {
  const r = new RateMeter(5);
  for (let s = 0; s < 5; s++) r.add(10, 10_000 + s * 1000);
  assert.equal(r.perSecond(14_500), 10);
  assert.equal(r.perSecond(30_000), 0);
});

void test("task ids carry their time and 48 random bits, and do not repeat", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const id = newTaskId(1_700_000_000_000 + i);
    assert.match(id, /^[0-9a-z]+-[0-9a-f]{12}$/);
    assert.equal(Number.parseInt(id.slice(0, id.indexOf("-")), 36), 1_700_000_000_000 + i);
    ids.add(id.slice(id.indexOf("-") + 1));
  }
  assert.equal(ids.size, 5000);
});

void test("task decoding names what is wrong", () => {
  const good = {
    op: "copy",
    shard: "1",
    sources: ["1"],
    target: "2",
    key: "a.bin",
    crc: "0a0b0c0d",
    size: 1,
    createdAt: 1,
  };
  assert.ok("task" in decodeTask(JSON.stringify(good)));
  const cases: [unknown, RegExp][] = [
    ["{x", /not JSON/],
    [[1], /not a JSON object/],
    [{ ...good, op: "move" }, /op must be/],
    [{ ...good, sources: [] }, /at least one source/],
    [{ ...good, crc: "zz" }, /crc must be/],
    [{ ...good, size: -1 }, /size/],
    [{ ...good, target: "" }, /target/],
  ];
  for (const [v, re] of cases) {
    const d = decodeTask(typeof v === "string" ? v : JSON.stringify(v));
    assert.ok("error" in d && re.test(d.error), JSON.stringify(v));
  }
});
