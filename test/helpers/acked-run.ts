import { cpus, totalmem } from "node:os";
import type { TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Agent, request } from "undici";
import { seededRandom } from "../../src/common/random.js";
import type { ShardReport } from "../../src/replicator/repair-report.js";
import {
  checkFinalState,
  countOps,
  formatVerdict,
  type OpRecord,
  type ReplicaRead,
  type Verdict,
} from "./acked-history.js";
import { digestOf, tagOf, Workload, type Answer, type Transport } from "./acked-workload.js";
import { ChaosCluster, ROLES, SHARDS, type DrainResult, type Role } from "./chaos-cluster.js";
import { LoadGate } from "./load-gate.js";
import { formatReport, listNode, repairStatus } from "./replica-state.js";
import type { FlippedByte } from "./volume-damage.js";
import { waitFor } from "./wait.js";

/**
 * One run of "acknowledged means final" against a real distributed cluster (`ChaosCluster`): the workload of
 * `acked-workload.ts` through both coordinators, optionally while a random process is SIGKILLed and restarted
 * every few seconds, some of them disk faults on a node (its data dir removed, or a byte of a stored body
 * flipped, before its restart); then a quiet period (every process running, nothing killed) until the
 * replication queue has drained and, when asked, until repair finds every shard's replicas the same; a read of
 * every replica of every address straight from the nodes, and the verdict of `acked-history.ts`. Shared by the
 * tests in test/e2e/ and `npm run chaos`.
 */

export interface ChaosSchedule {
  /** Kills to make (the load runs until the last killed process is back), and/or ... */
  kills?: number;
  /** ... how long processes are killed for. The schedule ends at the first of the two it is given. */
  durationMs?: number;
  /** Time from one kill to the next: uniform in [min, max]. */
  minIntervalMs: number;
  maxIntervalMs: number;
  /** A killed process stays down for up to this long (uniform) before it is started again. */
  maxDownMs: number;
  /**
   * Every this many-th fault is a disk fault on a random node instead of a plain kill: its data dir removed
   * ("wipe") and, the next time, a byte flipped in a stored body ("flip"), alternately, before its restart.
   */
  diskFaultEvery?: number;
}

/** A byte flipped on node `server`. */
export type Flip = FlippedByte & { server: string };

export interface RunOptions {
  seed: number;
  clients: number;
  keysPerClient: number;
  lanesPerClient: number;
  /** Without chaos: the number of ops to run. */
  maxOps?: number;
  chaos?: ChaosSchedule;
  /** More arguments for the replicator (`--repair-every 2s` for repair within a run). */
  replicatorArgs?: readonly string[];
  drainTimeoutMs: number;
  /**
   * After the drain, wait up to this long for a comparison of every shard by the replicator's repair that finds
   * nothing to repair (see `RunResult.repair`); no wait when undefined.
   */
  repairTimeoutMs?: number;
  log: (line: string) => void;
  /** A progress line this often (none when undefined). */
  progressEveryMs?: number;
}

export interface RunResult {
  seed: number;
  ops: OpRecord[];
  verdict: Verdict;
  kills: Record<Role, number>;
  crashes: readonly string[];
  drain: DrainResult;
  /** Disk faults made: data dirs removed, and the bytes flipped. */
  wipes: number;
  flips: Flip[];
  /**
   * Flipped bytes their node had still not noticed once repair was done (neither recovery nor the scrub had
   * quarantined the record, so repair could not restore it): found only by a read after the run.
   */
  unnoticedFlips: Flip[];
  /** With `repairTimeoutMs`: the replicator's last comparison of each shard, and whether it found nothing to repair. */
  repair?: { reports: ShardReport[]; clean: boolean; ms: number; error?: string };
  timings: { setupMs: number; loadMs: number; drainMs: number; readMs: number };
  /** Counts and the verdict, with the first violations in full. */
  report: string;
}

/** `BACKPACK_CHAOS_SEED` when set (a replay), else a fresh random seed. */
export function seedFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.BACKPACK_CHAOS_SEED;
  if (text !== undefined && text !== "") {
    const seed = Number(text);
    if (!Number.isSafeInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new Error(`BACKPACK_CHAOS_SEED must be a whole number 0-4294967295, got "${text}"`);
    }
    return seed;
  }
  return Math.floor(Math.random() * 0xffffffff);
}

function describeLength(c: ChaosSchedule): string {
  const parts: string[] = [];
  if (c.kills !== undefined) parts.push(`${c.kills} kills`);
  if (c.durationMs !== undefined) parts.push(`${(c.durationMs / 60_000).toFixed(1)} min`);
  return parts.join(" or ");
}

/** The run's method, printed first. */
export function describeMethod(options: RunOptions): string {
  const cpu = cpus();
  const lines = [
    `machine: ${cpu.length} × ${cpu[0]?.model ?? "?"}, ${(totalmem() / 1024 ** 3).toFixed(1)} GiB; Node.js ${process.version}`,
    `cluster: ZooKeeper, 2 Redis (AOF), 4 storage nodes in 2 shards of 2 (${Object.entries(SHARDS)
      .map(([s, ids]) => `shard ${s}: ${ids.join(",")}`)
      .join("; ")}), 2 coordinators, 1 replicator; real processes on loopback`,
    `load: ${options.clients} clients × ${options.keysPerClient} keys, ${options.lanesPerClient} sequences in flight each; ` +
      "PUT then DELETE (0-20 ms), PUT v1 then PUT v2 (0-50 ms), single PUTs and DELETEs; coordinators at random",
    options.chaos
      ? `chaos: ${describeLength(options.chaos)}, SIGKILL a random ${ROLES.join("/")} every ` +
        `${options.chaos.minIntervalMs / 1000}-${options.chaos.maxIntervalMs / 1000} s, down up to ${options.chaos.maxDownMs} ms, then restart` +
        (options.chaos.diskFaultEvery
          ? `; every ${options.chaos.diskFaultEvery}th a disk fault on a random node instead, once its shard is in ` +
            "sync with the load held: data dir removed / a byte of a stored body flipped, alternately"
          : "")
      : `no faults: ${options.maxOps} ops`,
    ...(options.replicatorArgs?.length ? [`replicator: ${options.replicatorArgs.join(" ")}`] : []),
    `seed: ${options.seed} (replay with BACKPACK_CHAOS_SEED=${options.seed})`,
  ];
  return lines.join("\n");
}

/** HTTP to the coordinators, one keep-alive pool, through `gate`; every failure becomes an `Answer`. */
function httpTransport(cluster: ChaosCluster, agent: Agent, gate: LoadGate): Transport {
  const send = (url: string, method: "PUT" | "DELETE", body?: Buffer): Promise<Answer> =>
    gate.run(() => sendNow(url, method, body));
  const sendNow = async (url: string, method: "PUT" | "DELETE", body?: Buffer): Promise<Answer> => {
    try {
      const res = await request(url, {
        method,
        ...(body ? { body } : {}),
        dispatcher: agent,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      return { status: res.statusCode, text: await res.body.text() };
    } catch (err) {
      const e = err as { code?: string; message?: string };
      return { status: 0, text: "", error: e.code ?? e.message ?? String(err) };
    }
  };
  return {
    coordinatorCount: cluster.coordinators.length,
    put: (c, key, body) => send(`${cluster.coordinatorUrl(c)}/${key}`, "PUT", body),
    del: (c, shard, key) => send(`${cluster.coordinatorUrl(c)}/${shard}:${key}`, "DELETE"),
  };
}

/** GET of `key` from one node: what it serves (a node that does not answer is asked again for a while). */
async function readReplica(
  cluster: ChaosCluster,
  agent: Agent,
  shard: string,
  server: string,
  key: string,
): Promise<ReplicaRead> {
  let read: ReplicaRead = { shard, key, server, status: 0 };
  const once = async (): Promise<boolean> => {
    try {
      const res = await request(`${cluster.nodeUrl(server)}/${key}`, { dispatcher: agent });
      const body = Buffer.from(await res.body.arrayBuffer());
      const version = res.headers["x-backpack-version"];
      read = { shard, key, server, status: res.statusCode };
      if (typeof version === "string") read.version = version;
      if (res.statusCode === 200) {
        read.digest = digestOf(body);
        const tag = tagOf(body);
        if (tag !== undefined) read.tag = tag;
      } else if (res.statusCode !== 404) {
        read.detail = body.toString("utf8").slice(0, 120);
      }
    } catch (err) {
      read = { shard, key, server, status: 0, detail: (err as Error).message };
    }
    return read.status === 200 || read.status === 404;
  };
  // Every node is up by now: a failed read is retried briefly, then reported as it was.
  await waitFor(once, { timeoutMs: 5000, intervalMs: 100, what: "a read" }).catch(() => undefined);
  return read;
}

/** Every replica of every shard's address of every key the workload touched. */
async function readAll(cluster: ChaosCluster, agent: Agent, keys: readonly string[]): Promise<ReplicaRead[]> {
  const jobs: { shard: string; server: string; key: string }[] = [];
  for (const key of keys) {
    for (const [shard, servers] of Object.entries(SHARDS)) {
      for (const server of servers) jobs.push({ shard, server, key });
    }
  }
  const reads: ReplicaRead[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < jobs.length) {
        const job = jobs[next++]!;
        reads.push(await readReplica(cluster, agent, job.shard, job.server, job.key));
      }
    }),
  );
  return reads;
}

/**
 * Kills and restarts a random process every minIntervalMs-maxIntervalMs, `kills` times or for `durationMs`; every
 * `diskFaultEvery`-th time a random node with a disk fault instead.
 */
async function chaosLoop(
  cluster: ChaosCluster,
  schedule: ChaosSchedule,
  seed: number,
  clock: () => number,
  gate: LoadGate,
  faults: { wipes: number; flips: Flip[]; heldMs: number[] },
): Promise<void> {
  // The schedule's own stream: the same seed kills the same processes at the same offsets.
  const random = seededRandom((seed ^ 0x5bd1e995) >>> 0);
  // Which stored body a flip damages: a stream of its own, so the schedule's draws stay as they were.
  const flipRandom = seededRandom((seed ^ 0x2545f491) >>> 0);
  const until = clock() + (schedule.durationMs ?? Infinity);
  const nodes = cluster.members().filter((m) => m.role === "node");
  let lastKill = clock();
  for (let n = 0; n < (schedule.kills ?? Infinity); n++) {
    const interval = schedule.minIntervalMs + random() * (schedule.maxIntervalMs - schedule.minIntervalMs);
    const role = ROLES[Math.floor(random() * ROLES.length)]!;
    const candidates = cluster.members().filter((m) => m.role === role);
    let victim = candidates[Math.floor(random() * candidates.length)]!;
    const downMs = Math.floor(random() * schedule.maxDownMs);
    const every = schedule.diskFaultEvery;
    const disk = every !== undefined && n % every === every - 1;
    if (disk) victim = nodes[Math.floor(random() * nodes.length)]!;
    const at = lastKill + interval;
    if (at > until) return;
    // The schedule itself is timed: this waits for the next kill's time, not for a condition.
    await sleep(Math.max(0, at - clock()));
    await cluster.restartCrashed();
    if (disk) {
      // A disk fault must be its shard's only fault: with the load held, the node's peer first comes to hold
      // everything it holds (through the queue or repair). Otherwise an upload acknowledged a moment ago, with
      // its only copy so far on this disk and its copy task queued, would go with the disk: a loss that "one
      // durable copy and a queued task" allows and that no repair can undo.
      const shard = Object.keys(SHARDS).find((s) => SHARDS[s]!.includes(victim.id))!;
      await gate.pause();
      try {
        const held = clock();
        await cluster.waitInSync(shard, 60_000);
        faults.heldMs.push(Math.round(clock() - held));
        lastKill = clock();
        await cluster.kill(victim);
      } finally {
        gate.resume();
      }
      if (faults.wipes <= faults.flips.length) {
        await cluster.removeData(victim.id);
        faults.wipes++;
      } else {
        const flipped = await cluster.flipByte(victim.id, flipRandom);
        if (flipped) faults.flips.push({ ...flipped, server: victim.id });
      }
    } else {
      lastKill = clock();
      await cluster.kill(victim);
    }
    if (downMs > 0) await sleep(downMs);
    await cluster.restart(victim);
  }
}

function formatCounts(counts: Record<string, number>): string {
  return (
    Object.entries(counts)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, n]) => `${k} ${n}`)
      .join(", ") || "none"
  );
}

export async function runAckedFinal(t: Pick<TestContext, "after">, options: RunOptions): Promise<RunResult> {
  try {
    return await run(t, options);
  } catch (err) {
    // Whatever stops a run (a kill that was no SIGKILL, a queue that never drains) names the seed to replay.
    throw new Error(
      `seed ${options.seed} (replay with BACKPACK_CHAOS_SEED=${options.seed}): ${(err as Error).message}`,
      { cause: err },
    );
  }
}

async function run(t: Pick<TestContext, "after">, options: RunOptions): Promise<RunResult> {
  const t0 = performance.now();
  const startEpochMs = Date.now();
  const clock = (): number => performance.now() - t0;
  const { log } = options;
  const agent = new Agent({ connections: 64, keepAliveTimeout: 2000 });
  t.after(() => agent.close());

  const cluster = await ChaosCluster.start(t, clock, {
    ...(options.replicatorArgs ? { replicatorArgs: options.replicatorArgs } : {}),
  });
  const gate = new LoadGate();
  const faults = { wipes: 0, flips: [] as Flip[], heldMs: [] as number[] };
  const setupMs = clock();
  log(`${(setupMs / 1000).toFixed(1)} s: cluster up`);

  const workload = new Workload(httpTransport(cluster, agent, gate), {
    seed: options.seed,
    clients: options.clients,
    keysPerClient: options.keysPerClient,
    lanesPerClient: options.lanesPerClient,
    keyPrefix: "af/",
    maxGapMs: 50,
    clock,
    ...(options.maxOps !== undefined && options.chaos === undefined ? { maxOps: options.maxOps } : {}),
  });
  const progress =
    options.progressEveryMs === undefined
      ? undefined
      : setInterval(() => {
          const kills = ROLES.map((r) => `${r} ${cluster.kills[r]}`).join(", ");
          log(
            `${(clock() / 1000).toFixed(0)} s: ops ${formatCounts(countOps(workload.ops))}; kills ${kills}`,
          );
        }, options.progressEveryMs);
  try {
    workload.start();
    if (options.chaos) {
      await chaosLoop(cluster, options.chaos, options.seed, clock, gate, faults).finally(() =>
        workload.stop(),
      );
    }
    await workload.finished();
  } finally {
    workload.stop();
    if (progress) clearInterval(progress);
  }
  const loadEnd = clock();
  log(`${(loadEnd / 1000).toFixed(1)} s: load done, ${workload.ops.length} ops; quiet period`);

  // Quiet: no more kills, every process running again, the queue drained.
  await cluster.restartAllDown();
  await cluster.restartCrashed();
  const drain = await cluster.waitDrained(options.drainTimeoutMs);
  log(`${(clock() / 1000).toFixed(1)} s: queue drained in ${(drain.ms / 1000).toFixed(1)} s`);
  await cluster.restartCrashed();
  const repair =
    options.repairTimeoutMs === undefined ? undefined : await waitRepaired(cluster, options, clock);
  if (repair) {
    log(
      `${(clock() / 1000).toFixed(1)} s: repair ${repair.clean ? "found nothing to repair" : "NOT clean"} ` +
        `after ${(repair.ms / 1000).toFixed(1)} s`,
    );
    await cluster.restartCrashed();
  }
  const unnoticedFlips = await findUnnoticed(cluster, faults.flips);
  if (unnoticedFlips.length > 0 && options.repairTimeoutMs !== undefined) {
    // Asking for them quarantined them: repair restores them before the replicas are read.
    log(`${unnoticedFlips.length} flipped bytes unnoticed until read; waiting for repair again`);
    await waitRepaired(cluster, options, clock);
  }

  const readStart = clock();
  const keys = [...new Set(workload.ops.map((op) => op.key))].sort();
  const reads = await readAll(cluster, agent, keys);
  const readMs = clock() - readStart;
  const verdict = checkFinalState(workload.ops, reads);
  log(`${(clock() / 1000).toFixed(1)} s: ${reads.length} replicas read and checked`);

  const kills = ROLES.map((r) => `${r} ${cluster.kills[r]}`).join(", ");
  const report = [
    `seed ${options.seed} (replay with BACKPACK_CHAOS_SEED=${options.seed}); ` +
      `run time 0 = ${new Date(startEpochMs).toISOString()}`,
    `ops: ${workload.ops.length} (${formatCounts(countOps(workload.ops))})`,
    `kills: ${kills}`,
    `processes that exited by themselves: ${cluster.crashed.length === 0 ? "none" : cluster.crashed.join("\n")}`,
    `dead letters in the queue: ${drain.deadLetters}`,
    `disk faults: ${faults.wipes} data dirs removed, ${faults.flips.length} bytes flipped ` +
      `(${faults.flips.map((f) => `node ${f.server} ${f.key} version ${f.version}`).join(", ") || "none"}; ` +
      `unnoticed by their node once repair was done: ${
        unnoticedFlips.map((f) => `node ${f.server} ${f.key}`).join(", ") || "none"
      }); load held before each until its shard was in sync: ${faults.heldMs.join(", ") || "-"} ms`,
    ...(repair
      ? [
          `repair after the drain: ${repair.clean ? "clean" : `NOT clean (${repair.error ?? "?"})`} in ` +
            `${(repair.ms / 1000).toFixed(1)} s; last comparisons: ${repair.reports.map(formatReport).join(" | ")}`,
        ]
      : []),
    `times: setup ${(setupMs / 1000).toFixed(1)} s, load ${((loadEnd - setupMs) / 1000).toFixed(1)} s, ` +
      `drain ${(drain.ms / 1000).toFixed(1)} s, read ${(readMs / 1000).toFixed(1)} s`,
    formatVerdict(verdict, { events: cluster.events, startEpochMs }),
  ].join("\n");
  return {
    seed: options.seed,
    ops: workload.ops,
    verdict,
    kills: { ...cluster.kills },
    crashes: cluster.crashed,
    drain,
    wipes: faults.wipes,
    flips: faults.flips,
    unnoticedFlips,
    ...(repair ? { repair } : {}),
    timings: { setupMs, loadMs: loadEnd - setupMs, drainMs: drain.ms, readMs },
    report,
  };
}

/**
 * Waits for a comparison of every shard begun after the drain that finds nothing to repair (every server
 * compared, nothing under-replicated, no differing bucket); when none comes in time, the last reports as they are.
 */
async function waitRepaired(
  cluster: ChaosCluster,
  options: RunOptions,
  clock: () => number,
): Promise<NonNullable<RunResult["repair"]>> {
  const started = clock();
  try {
    const reports = await cluster.waitCompared(Date.now(), {
      timeoutMs: options.repairTimeoutMs!,
      untilClean: true,
    });
    return { reports, clean: true, ms: clock() - started };
  } catch (err) {
    const reports = (await repairStatus(cluster.replicator.url).catch(() => undefined))?.shards ?? [];
    return { reports, clean: false, ms: clock() - started, error: (err as Error).message };
  }
}

/**
 * The flips whose damaged record its node still took for good: it lists the flipped version as intact, and a GET
 * of it fails the checksum (502). A record restored by repair, or replaced by a newer write or delete since, is
 * not one.
 */
async function findUnnoticed(cluster: ChaosCluster, flips: readonly Flip[]): Promise<Flip[]> {
  const out: Flip[] = [];
  for (const f of flips) {
    const listed = (await listNode(cluster.nodeUrl(f.server))).get(f.key);
    if (listed?.version !== f.version || listed.damaged) continue;
    const res = await request(`${cluster.nodeUrl(f.server)}/${f.key}`);
    await res.body.dump();
    if (res.statusCode === 502) out.push(f);
  }
  return out;
}
