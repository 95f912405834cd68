/**
 * Cost of a cluster-map change (compare-and-set of a shard's usage, as coordinators do every few seconds and
 * admins do by hand), against plain writes measured in the same run:
 *   - ZooKeeper: `addUsage` (read + versioned multi-op, retried on conflict) vs an unconditional `setData`;
 *     one writer, then several writers on the same znode (every increment must survive).
 *   - Embedded file: `addUsage` (lock file, read, atomic replace with fsync) vs the atomic replace alone.
 * Run: `npm run build && node dist/bench/cluster-map-bench.js` (env BENCH_OPS, BENCH_WRITERS).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import zookeeper from "node-zookeeper-client";
import { writeAtomic } from "../src/cluster/embedded.js";
import { openClusterMap, type ClusterMapTarget } from "../src/cluster/open.js";
import type { ClusterMap } from "../src/cluster/types.js";
import { startZooKeeper } from "../test/helpers/zookeeper.js";

const OPS = Number(process.env.BENCH_OPS ?? 1000);
const WRITERS = Number(process.env.BENCH_WRITERS ?? 4);

function rate(ops: number, ms: number): string {
  return `${Math.round((ops / ms) * 1000).toLocaleString("en-US")} ops/s`;
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

async function prepared(target: ClusterMapTarget): Promise<ClusterMap> {
  const map = openClusterMap(target);
  await map.start();
  await map.init({ key: "q", servers: [{ host: "127.0.0.1", port: 6379 }] });
  await map.addServer("1", "http://127.0.0.1:10001");
  await map.addShard("1", ["1"], 1024 ** 4);
  return map;
}

async function zooKeeperRuns(): Promise<void> {
  const hooks: (() => Promise<void>)[] = [];
  try {
    const zk = await startZooKeeper({ after: (fn) => hooks.push(fn) });
    const target = { zk: zk.connectString, root: "/bench" };
    const map = await prepared(target);

    const client = zookeeper.createClient(zk.connectString);
    await new Promise<void>((resolve) => {
      client.once("connected", () => resolve());
      client.connect();
    });
    const set = (): Promise<void> =>
      new Promise((resolve, reject) =>
        client.setData("/bench/plain", Buffer.from('{"capacity":1,"current":1}'), (err) =>
          err ? reject(new Error(String(err))) : resolve(),
        ),
      );
    await new Promise<void>((resolve) => client.mkdirp("/bench/plain", () => resolve()));

    // Warm-up (JVM JIT, Node JIT, disk) before anything is timed; the order of the timed runs then alternates.
    for (let i = 0; i < OPS / 5; i++) await Promise.all([set(), map.addUsage({ 1: 1 })]);
    const plainMs = await timed(async () => {
      for (let i = 0; i < OPS; i++) await set();
    });
    const casMs = await timed(async () => {
      for (let i = 0; i < OPS; i++) await map.addUsage({ 1: 1 });
    });
    console.log(`zookeeper, 1 writer, ${OPS} ops:`);
    console.log(`  baseline setData (unconditional)   ${rate(OPS, plainMs)}`);
    console.log(
      `  addUsage (read + versioned multi)  ${rate(OPS, casMs)}  = ${(plainMs / casMs).toFixed(2)}x baseline`,
    );

    const usedBefore = await usage(target);
    const writers = await Promise.all(Array.from({ length: WRITERS }, () => openStarted(target)));
    const per = Math.ceil(OPS / WRITERS);
    const plainManyMs = await timed(async () => {
      await Promise.all(
        Array.from({ length: WRITERS }, async () => {
          for (let i = 0; i < per; i++) await set();
        }),
      );
    });
    const casManyMs = await timed(async () => {
      await Promise.all(
        writers.map(async (w) => {
          for (let i = 0; i < per; i++) await w.addUsage({ 1: 1 });
        }),
      );
    });
    const added = (await usage(target)) - usedBefore;
    console.log(`zookeeper, ${WRITERS} writers (separate sessions) on one znode, ${per * WRITERS} ops:`);
    console.log(`  baseline setData (unconditional)   ${rate(per * WRITERS, plainManyMs)}`);
    console.log(
      `  addUsage with conflicts + retries  ${rate(per * WRITERS, casManyMs)}  = ${(plainManyMs / casManyMs).toFixed(2)}x baseline; ` +
        `usage grew by ${added} of ${per * WRITERS} (${added === per * WRITERS ? "no lost update" : "LOST UPDATES"})`,
    );
    for (const m of [map, ...writers]) await m.stop();
    client.close();
  } finally {
    for (const fn of hooks) await fn();
  }
}

/** The shard's usage as a fresh reader sees it. */
async function usage(target: ClusterMapTarget): Promise<number> {
  const reader = await openStarted(target);
  const used = reader.snapshot().shards["1"]?.used ?? 0;
  await reader.stop();
  return used;
}

async function openStarted(target: ClusterMapTarget): Promise<ClusterMap> {
  const map = openClusterMap(target);
  await map.start();
  return map;
}

async function embeddedRuns(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "backpack-bench-"));
  try {
    const map = await prepared({ file: join(dir, "cluster.json") });
    const text = JSON.stringify({ nodes: { "shard-size-1": { capacity: 1, current: 1 } } });
    const n = Math.min(OPS, 500);
    for (let i = 0; i < n / 5; i++) {
      await writeAtomic(join(dir, "plain.json"), text);
      await map.addUsage({ 1: 1 });
    }
    const casMs = await timed(async () => {
      for (let i = 0; i < n; i++) await map.addUsage({ 1: 1 });
    });
    const plainMs = await timed(async () => {
      for (let i = 0; i < n; i++) await writeAtomic(join(dir, "plain.json"), text);
    });
    console.log(`embedded file, 1 writer, ${n} ops:`);
    console.log(`  baseline atomic replace (fsync x2) ${rate(n, plainMs)}`);
    console.log(
      `  addUsage (lock, read, replace)     ${rate(n, casMs)}  = ${(plainMs / casMs).toFixed(2)}x baseline`,
    );
    await map.stop();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const cpu = cpus();
console.log(
  `cluster-map bench: ${cpu.length} x ${cpu[0]?.model ?? "?"}, Node ${process.version}, ZooKeeper from Debian's ` +
    `package (standalone, tickTime 500, loopback), ${OPS} ops per run, ${WRITERS} concurrent writers`,
);
await zooKeeperRuns();
await embeddedRuns();
