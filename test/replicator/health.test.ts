import assert from "node:assert/strict";
import { test } from "node:test";
import type { ReplicaDigest } from "../../src/client/node-client.js";
import { newReport, shardHealth, type ShardReport } from "../../src/replicator/repair-report.js";

function report(overrides: Partial<ShardReport>): ShardReport {
  return { ...newReport("1"), startedAt: Date.now() - 10_000, compared: ["a", "b"], ...overrides };
}

function digest(entries: number): ReplicaDigest {
  const scrub = { rateBytesPerSec: 8 << 20, passesCompleted: 1, bytesVerified: 0, recordsVerified: 0 };
  return {
    entries,
    objects: entries,
    checksumErrors: 0,
    scrub: { ...scrub, damagedFound: 0, lastPassCompletedAt: undefined, current: undefined },
    hashes: new Uint32Array(2),
  };
}

void test("a node refilled by the comparison under way shows what it lacked, what is copied, the rate and an ETA", () => {
  // b came back empty: a holds 1000 entries; 10 s in, 250 copied.
  const r = report({
    differingBuckets: 4096,
    underReplicated: 300,
    progress: { a: { needed: 0, done: 0 }, b: { needed: 300, done: 250 } },
  });
  const h = shardHealth(
    r,
    new Map([
      ["a", digest(1000)],
      ["b", digest(0)],
    ]),
    undefined,
    "http://r",
  );
  assert.equal(h.nodes.a?.state, "ok");
  assert.equal(h.nodes.b?.state, "refilling");
  const refill = h.nodes.b.refill!;
  assert.equal(refill.missing, 1000);
  assert.equal(refill.done, 250);
  assert.ok(refill.perSec > 20 && refill.perSec < 30, `rate ${refill.perSec}`);
  assert.ok(refill.etaSec! >= 28 && refill.etaSec! <= 32, `ETA ${refill.etaSec}`);
  // The buckets not listed yet count too: 750 files still lack their second copy.
  assert.equal(h.underReplicated, 750);
  assert.equal(h.lastComparison, null, "no complete comparison yet");
  assert.deepEqual(h.running && [h.running.repairsNeeded, h.running.repairsDone], [300, 250]);
});

void test("a finished comparison: repaired files are no longer under-replicated; a server it could not reach is down", () => {
  const done = report({
    finishedAt: Date.now(),
    underReplicated: 40,
    underReplicatedFixed: 38,
    failed: 2,
    progress: { a: { needed: 0, done: 0 }, b: { needed: 40, done: 38 } },
  });
  const h = shardHealth(
    done,
    new Map([
      ["a", digest(100)],
      ["b", digest(98)],
    ]),
    undefined,
    "http://r",
  );
  assert.equal(h.underReplicated, 2, "two repairs failed: two files still lack a copy");
  assert.equal(h.nodes.b?.state, "behind");
  assert.equal(h.running, null);
  assert.equal(h.lastComparison?.failed, 2);

  const away = report({
    finishedAt: Date.now(),
    compared: ["a"],
    skipped: [{ server: "b", reason: "connect ECONNREFUSED" }],
    underReplicated: 100,
  });
  const d = shardHealth(away, new Map([["a", digest(100)]]), done, "http://r");
  assert.deepEqual(d.nodes.b, { state: "down", reason: "connect ECONNREFUSED" });
  assert.equal(d.underReplicated, 100);
});
