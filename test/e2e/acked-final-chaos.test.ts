import assert from "node:assert/strict";
import { test } from "node:test";
import { describeMethod, runAckedFinal, seedFromEnv, type RunOptions } from "../helpers/acked-run.js";

/**
 * "Acknowledged means final" under crashes: the load of acked-final.test.ts (PUT then DELETE soon after, PUT v1
 * then PUT v2 quickly, through both coordinators) while a random node, coordinator, replicator or Redis server is
 * SIGKILLed and restarted every 1.5-4 s, 24 times in about 66-90 s (each checked to be a real SIGKILL); every 4th
 * of them is a disk fault on a node instead, 3 of each kind: its data dir removed, or a byte flipped in the middle
 * of a stored body, before its restart (each once its shard is in sync with the load held, so that it is the
 * shard's only fault). The replicator's repair compares the replicas every 2 s. Then a quiet period: every
 * process running, the replication queue drained, and a comparison of every shard that finds nothing to repair
 * (nothing under-replicated: wiped nodes refilled, damaged records restored); every replica of every address is
 * read straight from the nodes. Where the last op on an address was acknowledged, every replica holds exactly
 * that; later ops with an unknown outcome (5xx, cut connection) may show instead; nothing older may. The seed is
 * printed first and in every failure; `BACKPACK_CHAOS_SEED=<n>` replays the same kill schedule and choices.
 */
void test("acknowledged means final while processes are SIGKILLed and restarted every 1.5-4 s, disks wiped and bit-rotted", async (t) => {
  const options: RunOptions = {
    seed: seedFromEnv(),
    clients: 8,
    keysPerClient: 24,
    lanesPerClient: 2,
    // 24 kills 1.5-4 s apart: about 66 s, more when restarts are slow (the count does not depend on it).
    chaos: { kills: 24, minIntervalMs: 1500, maxIntervalMs: 4000, maxDownMs: 1000, diskFaultEvery: 4 },
    replicatorArgs: ["--repair-every", "2s"],
    // Tasks that failed while a process was down come back after a backoff of up to 60 s (jittered).
    drainTimeoutMs: 300_000,
    repairTimeoutMs: 60_000,
    log: (line) => t.diagnostic(line),
    progressEveryMs: 15_000,
  };
  // Printed first, so that a run that never finishes still names its seed.
  console.log(describeMethod(options));
  const result = await runAckedFinal(t, options);
  t.diagnostic(result.report.split("\n").slice(0, 8).join(" | "));

  assert.equal(result.verdict.violations.length, 0, result.report);
  assert.deepEqual(result.crashes, [], `no process exits by itself; ${result.report}`);
  // Self-healing: the replicator's comparison of every shard after the run found every file on every replica.
  assert.ok(result.repair, "the repair was checked");
  assert.equal(result.repair.reports.length, 2, `a comparison of each shard; ${result.report}`);
  for (const r of result.repair.reports)
    assert.equal(r.underReplicated, 0, `shard ${r.shard}; ${result.report}`);
  assert.ok(result.repair.clean, result.report);
  // Not vacuous: the schedule ran, and the load went on through it.
  const kills = Object.values(result.kills).reduce((a, b) => a + b, 0);
  assert.equal(kills, 24, `kills: ${JSON.stringify(result.kills)}; seed ${result.seed}`);
  assert.equal(result.wipes, 3, `data dirs removed; ${result.report}`);
  assert.ok(result.flips.length >= 2, `bytes flipped: ${result.flips.length}; ${result.report}`);
  const acked = (kind: string): number =>
    result.ops.filter((op) => op.kind === kind && op.outcome === "ack").length;
  assert.ok(acked("put") >= 200, `acknowledged PUTs: ${acked("put")}; ${result.report}`);
  assert.ok(acked("delete") >= 50, `acknowledged DELETEs: ${acked("delete")}; ${result.report}`);
});
