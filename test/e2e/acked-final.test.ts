import assert from "node:assert/strict";
import { test } from "node:test";
import { describeMethod, runAckedFinal, seedFromEnv, type RunOptions } from "../helpers/acked-run.js";

/**
 * "Acknowledged means final", without faults: a distributed cluster of real processes (ZooKeeper, 2 Redis,
 * 4 nodes in 2 shards of 2, 2 coordinators, 1 replicator) takes 3,000 ops through both coordinators — PUT then
 * DELETE of the address answered 0-20 ms later, PUT v1 then PUT v2 0-50 ms apart, single PUTs and DELETEs —
 * from clients that each own their keys (one op per key at a time). Once the queue has drained, every replica
 * of every address, read straight from the nodes, holds exactly what the last acknowledged op left there:
 * the bytes of the last acknowledged PUT, or nothing after an acknowledged DELETE.
 * `BACKPACK_CHAOS_SEED=<n>` replays a run's choices.
 */
void test("acknowledged means final: 3,000 quick overwrites and deletes, every replica holds the last acknowledged state", async (t) => {
  const options: RunOptions = {
    seed: seedFromEnv(),
    clients: 8,
    keysPerClient: 24,
    lanesPerClient: 2,
    maxOps: 3000,
    drainTimeoutMs: 120_000,
    log: (line) => t.diagnostic(line),
  };
  // Printed first, so that a run that never finishes still names its seed.
  console.log(describeMethod(options));
  const result = await runAckedFinal(t, options);
  t.diagnostic(result.report.split("\n").slice(0, 7).join(" | "));

  assert.equal(result.verdict.violations.length, 0, result.report);
  assert.deepEqual(result.crashes, [], `no process exits by itself; ${result.report}`);
  // Not vacuous: the load did what it is meant to (without faults nearly every op is acknowledged).
  const acked = (kind: string): number =>
    result.ops.filter((op) => op.kind === kind && op.outcome === "ack").length;
  assert.ok(result.ops.length >= 3000, `ops: ${result.ops.length}`);
  assert.ok(acked("put") >= 1500, `acknowledged PUTs: ${acked("put")}; ${result.report}`);
  assert.ok(acked("delete") >= 500, `acknowledged DELETEs: ${acked("delete")}; ${result.report}`);
  assert.ok(result.verdict.replicas >= 4 * 8 * 24 * 0.9, `replicas read: ${result.verdict.replicas}`);
});
