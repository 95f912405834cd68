import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { countOps, type OpRecord } from "../test/helpers/acked-history.js";
import { describeMethod, runAckedFinal, seedFromEnv, type RunOptions } from "../test/helpers/acked-run.js";
import { ROLES } from "../test/helpers/chaos-cluster.js";

/**
 * `npm run chaos -- --minutes 10 [--seed N]`: the long run of "acknowledged means final". A distributed
 * cluster of real processes (ZooKeeper, 2 Redis, 4 nodes in 2 shards of 2, 2 coordinators, 1 replicator) takes
 * the load of test/e2e/acked-final*.test.ts while a random node, coordinator, replicator or Redis server is
 * SIGKILLed and restarted every 1.5-4 s, every 4th of them a disk fault on a node instead (data dir removed, or
 * a byte of a stored body flipped); then a quiet period until the replication queue has drained and repair finds
 * every shard's replicas the same, and every replica of every address is read from the nodes and checked. Prints
 * its method first, progress every 30 s, and at the end ops by outcome, kills by role, disk faults, the repair's
 * last comparisons and the violations; exits 1 on any violation, a process that exited by itself, or a shard
 * repair left under-replicated. `--seed` (or BACKPACK_CHAOS_SEED) replays a run's kill schedule and choices.
 */
const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    seed: { type: "string" },
    clients: { type: "string", default: "8" },
    keys: { type: "string", default: "32" },
  },
});
const minutes = Number(values.minutes);
if (!(minutes > 0)) throw new Error(`--minutes must be a positive number, got ${values.minutes}`);

const cleanups: (() => unknown)[] = [];
const hooks = { after: (fn: () => unknown) => void cleanups.unshift(fn) };
let cleaning: Promise<void> | undefined;
/** Stops every process the run started; the run's end and a signal share the one cleanup. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of cleanups.splice(0)) {
      try {
        await fn();
      } catch {
        // Best effort: the next one still runs.
      }
    }
  })();
  return cleaning;
}
let interrupted = false;
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  process.once(signal, () => {
    interrupted = true;
    console.log(`${signal}: stopping every process`);
    void cleanUp().finally(() => process.exit(code));
  });
}

const options: RunOptions = {
  seed: values.seed !== undefined ? seedFromEnv({ BACKPACK_CHAOS_SEED: values.seed }) : seedFromEnv(),
  clients: Number(values.clients),
  keysPerClient: Number(values.keys),
  lanesPerClient: 2,
  chaos: {
    durationMs: minutes * 60_000,
    minIntervalMs: 1500,
    maxIntervalMs: 4000,
    maxDownMs: 1000,
    diskFaultEvery: 4,
  },
  replicatorArgs: ["--repair-every", "2s"],
  drainTimeoutMs: 600_000,
  repairTimeoutMs: 120_000,
  log: (line) => console.log(line),
  progressEveryMs: 30_000,
};

console.log("# npm run chaos: acknowledged means final under SIGKILLs");
console.log(describeMethod(options));
console.log(
  `load average at the start: ${loadavg()
    .map((x) => x.toFixed(1))
    .join(" / ")}`,
);
console.log("");

let code = 1;
try {
  const result = await runAckedFinal(hooks, options);
  const kills = ROLES.map((r) => `${r} ${result.kills[r]}`).join(", ");
  const total = Object.values(result.kills).reduce((a, b) => a + b, 0);
  console.log("");
  console.log(result.report);
  console.log("");
  console.log("# result");
  console.log(`ops: ${result.ops.length}; by outcome: ${JSON.stringify(countOps(result.ops))}`);
  console.log(
    `answers that were not an acknowledgement, by op, status and code: ${JSON.stringify(failures(result.ops))}`,
  );
  console.log(`kills: ${total} (${kills})`);
  console.log(`processes that exited by themselves: ${result.crashes.length}`);
  console.log(
    `disk faults: ${result.wipes} data dirs removed, ${result.flips.length} bytes flipped ` +
      `(${result.unnoticedFlips.length} of them not noticed by their node by the end: found by a read)`,
  );
  const underReplicated = (result.repair?.reports ?? []).reduce((n, r) => n + r.underReplicated, 0);
  console.log(
    `repair after the run: ${result.repair?.clean ? "clean" : "NOT clean"}, under-replicated ${underReplicated}`,
  );
  console.log(`violations: ${result.verdict.violations.length}`);
  console.log(`seed: ${result.seed}`);
  const healed = result.repair?.clean === true && underReplicated === 0;
  code = result.verdict.violations.length === 0 && result.crashes.length === 0 && healed ? 0 : 1;
} catch (err) {
  // Interrupted: the run fails as its processes are stopped under it; that is not news.
  if (!interrupted) console.error(`chaos run failed (seed ${options.seed}):`, err);
} finally {
  await cleanUp();
}
process.exit(code);

/** Counts of the ops that were not acknowledged, by kind, status and error code (`delete 404 NOT_FOUND`). */
function failures(ops: readonly OpRecord[]): Record<string, number> {
  return countOps(
    ops.filter((op) => op.endMs !== 0 && op.outcome !== "ack"),
    (op) => `${op.kind} ${op.status} ${op.detail.split(" ")[0] ?? ""}`,
  );
}
