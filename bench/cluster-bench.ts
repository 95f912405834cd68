import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { EmbeddedClusterMap } from "../src/cluster/embedded.js";
import { renderNginxConfig } from "../src/coordinator/nginx-config.js";
import { fillKeys } from "./lib/fill.js";
import { hasWrk, runLoad, type LoadResult } from "./lib/load.js";
import { startNginx } from "../test/helpers/nginx.js";
import { startRedis } from "../test/helpers/redis.js";
import { processCpuSeconds, startServerProcess, type ServerProcess } from "./lib/server-process.js";

/**
 * `npm run bench:cluster`: a local multi-process cluster (2 shards × 2 storage nodes, 1 coordinator, 1
 * replicator; the cluster map in an embedded map file shared by the processes, the replication queue on a real
 * redis-server). In one run: PUT 1 KiB through the coordinator vs straight to a node, GET 1 KiB through the
 * coordinator vs straight from a node, and the replication lag while the coordinator takes uploads.
 * Options (env): BENCH_SECONDS (default 8), BENCH_CONNECTIONS (default 64), BENCH_SYNC (batch|none, default
 * batch).
 */
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
/** `batch` (default: acknowledged after a shared fsync) or `none` (shows the coordinator's own cost). */
const SYNC = process.env.BENCH_SYNC ?? "batch";
const BYTES = 1024;
const KEYS = 2000;
const BIN = (name: string): string => fileURLToPath(new URL(`../src/cli/bin/${name}.js`, import.meta.url));
const PROXY_BASELINE = fileURLToPath(new URL("./lib/proxy-baseline.js", import.meta.url));
const TARGETS = { put: 0.5, get: 0.7, lagP99Ms: 500 };

function loadAvg(): string {
  return loadavg()
    .map((x) => x.toFixed(1))
    .join(" / ");
}

function fmt(r: LoadResult): string {
  return `${r.rps.toFixed(0).padStart(8)} req/s  p99 ${r.p99Ms.toFixed(2).padStart(7)} ms${r.errors ? `  (${r.errors} errors!)` : ""}`;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

/**
 * Replication lag probes: every `everyMs`, one upload through the coordinator, then both nodes of its shard are
 * polled (a one-byte GET every 25 ms, so the polling itself does not load the nodes) until both have it; lag = time from the coordinator's 200 until the second copy.
 */
async function probeLag(
  coordinator: string,
  nodesOf: Record<string, string[]>,
  untilMs: number,
  everyMs: number,
): Promise<number[]> {
  const agent = new Agent({ connections: 8 });
  const lags: number[] = [];
  const probes: Promise<void>[] = [];
  let n = 0;
  while (Date.now() < untilMs) {
    const key = `lag/${n++}`;
    probes.push(
      (async () => {
        const res = await request(`${coordinator}/${key}`, {
          method: "PUT",
          body: Buffer.alloc(BYTES, 1),
          dispatcher: agent,
        });
        const json = (await res.body.json()) as { shard_id?: string };
        if (res.statusCode !== 200 || json.shard_id === undefined) return;
        const acked = performance.now();
        const nodes = nodesOf[json.shard_id] ?? [];
        for (;;) {
          const heads = await Promise.all(
            nodes.map(async (base) => {
              const r = await request(`${base}/${key}`, {
                method: "GET",
                headers: { range: "bytes=0-0" },
                dispatcher: agent,
              });
              await r.body.dump();
              return r.statusCode < 300;
            }),
          );
          if (heads.every(Boolean)) break;
          if (performance.now() - acked > 60_000) return;
          await sleep(25);
        }
        lags.push(performance.now() - acked);
      })(),
    );
    await sleep(everyMs);
  }
  await Promise.all(probes);
  await agent.close();
  return lags.sort((a, b) => a - b);
}

type Timed = (run: () => Promise<LoadResult>, what: string) => Promise<LoadResult>;
type Load = (url: string, method: "GET" | "PUT", prefix: string, durationSec: number) => Promise<LoadResult>;

/** The pids of a process's children (nginx's workers), from /proc. */
function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/**
 * GET of the bench's keys through other fronts, for comparison (no targets): the seed's read front (nginx from
 * Debian's package, skipped where it is missing, with the config `backpack-coordinator-nginx-config` prints:
 * both nodes of shard 1 behind it, as behind the coordinator) and the least a Node proxy hop costs
 * (`bench/lib/proxy-baseline.ts` before node 1: through undici, and through a bare socket). `setFront` names
 * the processes whose CPU the rows report as `front`.
 */
async function compareFronts(o: {
  mapFile: string;
  node: string;
  timed: Timed;
  load: Load;
  setFront: (pids: number[]) => void;
  after: (fn: () => Promise<void>) => void;
}): Promise<{ name: string; result: LoadResult }[]> {
  const out: { name: string; result: LoadResult }[] = [];
  const run = async (name: string, url: string, prefix: string, pids: number[]): Promise<void> => {
    o.setFront(pids);
    await o.load(url, "GET", prefix, 2);
    out.push({
      name,
      result: await o.timed(() => o.load(url, "GET", prefix, SECONDS), `GET through ${name}`),
    });
    o.setFront([]);
  };
  if (spawnSync("nginx", ["-v"]).status === 0) {
    const map = new EmbeddedClusterMap({ file: o.mapFile });
    await map.start();
    const snapshot = map.snapshot();
    await map.stop();
    const nginx = await startNginx({ after: o.after }, (listen) => renderNginxConfig(snapshot, { listen }));
    await run("nginx (the generated config)", nginx.url, "/1:bench/get/", childPids(nginx.proc?.pid ?? 0));
  }
  for (const mode of ["undici", "socket"]) {
    const proxy = await startServerProcess(PROXY_BASELINE, [o.node, mode]);
    try {
      await run(`a minimal node:http proxy (${mode})`, proxy.url, "/bench/get/", [proxy.pid]);
    } finally {
      await proxy.stop();
    }
  }
  return out;
}

/** Waits until the coordinator reports an empty replication queue; returns how long that took (ms). */
async function drainQueue(coordinator: string, timeoutMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const stats = (await (await fetch(`${coordinator}/stats`)).json()) as { queue_length?: number };
    if (stats.queue_length === 0) return performance.now() - started;
    if (performance.now() - started > timeoutMs) throw new Error("the replication queue did not drain");
    await sleep(250);
  }
}

async function main(): Promise<void> {
  const cpu = cpus()[0]?.model ?? "unknown cpu";
  console.log("# backpack cluster benchmark");
  console.log(
    `machine: ${cpus().length} × ${cpu}, ${(totalmem() / 1024 ** 3).toFixed(1)} GiB RAM; Node ${process.version}`,
  );
  console.log(
    `load tool: ${hasWrk() ? "wrk (2 threads, a distinct key per request from a key range)" : "autocannon"}`,
  );
  console.log(
    `method: 4 storage nodes (sync=${SYNC}) in 2 shards × 2, 1 coordinator, 1 replicator (concurrency 64), each its own process;`,
  );
  console.log("cluster map: the embedded map file; replication queue: a real redis-server (AOF on).");
  console.log(`load average at start: ${loadAvg()} (other work on the machine skews every figure)`);
  console.log(
    `${BYTES} B bodies, ${CONNECTIONS} connections, ${SECONDS} s per run after a 2 s warm-up. PUT: coordinator (store on one node + queue`,
  );
  console.log(
    "a copy task, replicated in the background) vs straight to one node. GET: coordinator /1:<key> (failover reader) vs the",
  );
  console.log(
    "node itself. Lag: one probe upload through the coordinator every 200 ms (polled every 25 ms) during the coordinator PUT run.\n",
  );

  const dir = await mkdtemp(join(tmpdir(), "backpack-cluster-bench-"));
  const servers: ServerProcess[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  try {
    // The test harness's redis-server (AOF on, temp dir), stopped in the finally below.
    const r = await startRedis({ after: (fn) => void cleanups.unshift(fn) });
    const mapFile = join(dir, "cluster.json");
    const map = new EmbeddedClusterMap({ file: mapFile });
    await map.start();
    await map.init({ key: "bench-queue", servers: [{ host: "127.0.0.1", port: r.port }] });
    const nodes: string[] = [];
    for (let i = 1; i <= 4; i++) {
      const node = await startServerProcess(BIN("backpack"), [
        "node",
        join(dir, `node-${i}`),
        "127.0.0.1",
        "0",
        "--sync",
        SYNC,
      ]);
      servers.push(node);
      nodes.push(node.url);
      await map.addServer(String(i), node.url);
    }
    const nodesOf: Record<string, string[]> = { "1": [nodes[0]!, nodes[1]!], "2": [nodes[2]!, nodes[3]!] };
    await map.addShard("1", ["1", "2"], 100 * 1024 ** 3);
    await map.addShard("2", ["3", "4"], 100 * 1024 ** 3);
    await map.setShardEnabled("1", true);
    await map.setShardEnabled("2", true);
    await map.stop();
    const zk = `file:${mapFile}`;
    const coordinator = await startServerProcess(BIN("backpack-coordinator"), [
      zk,
      "/",
      "127.0.0.1",
      "0",
      "--log-level",
      "info",
    ]);
    servers.push(coordinator);
    // For the ceiling row only: a second coordinator that never waits for the replication backlog.
    const unthrottled = await startServerProcess(BIN("backpack-coordinator"), [
      zk,
      "/",
      "127.0.0.1",
      "0",
      "--max-backlog",
      "0",
    ]);
    servers.push(unthrottled);
    const startReplicator = async (): Promise<ServerProcess> => {
      const replicator = await startServerProcess(BIN("backpack-replicator"), [
        zk,
        "/",
        "64",
        "--listen",
        "127.0.0.1:0",
      ]);
      servers.push(replicator);
      return replicator;
    };

    const load = (
      url: string,
      method: "GET" | "PUT",
      prefix: string,
      durationSec: number,
    ): Promise<LoadResult> =>
      runLoad({
        url,
        method,
        connections: CONNECTIONS,
        durationSec,
        pathPrefix: prefix,
        keys: KEYS,
        bodyBytes: method === "PUT" ? BYTES : undefined,
      });

    // CPU time per request of each kind of process, per run: where the machine's two cores went. `front`: the
    // process in front of the nodes in a comparison row (nginx's worker, a baseline proxy).
    const groups: Record<string, number[]> = {
      nodes: servers.slice(0, 4).map((s) => s.pid),
      coordinator: [coordinator.pid, unthrottled.pid],
      replicator: [],
      redis: [r.proc?.pid ?? 0],
      front: [],
    };
    const cpuNow = (): Record<string, number> =>
      Object.fromEntries(
        Object.entries(groups).map(([g, pids]) => [
          g,
          pids.reduce((a, p) => a + (processCpuSeconds(p) ?? 0), 0),
        ]),
      );
    const timed = async (run: () => Promise<LoadResult>, what: string): Promise<LoadResult> => {
      const before = cpuNow();
      const result = await run();
      const after = cpuNow();
      const parts = Object.keys(groups)
        .filter((g) => (groups[g]?.length ?? 0) > 0)
        .map(
          (g) =>
            `${g} ${((((after[g] ?? 0) - (before[g] ?? 0)) * 1e6) / Math.max(1, result.requests)).toFixed(0)}`,
        );
      console.log(`  CPU µs per request, ${what}: ${parts.join(", ")}`);
      return result;
    };

    // PUT: direct to node 1; the coordinator's own path with no replication running (the ceiling); then, with
    // the replicator running, through the coordinator (with lag probes alongside).
    await load(nodes[0]!, "PUT", "/bench/direct/", 2);
    const directPut = await timed(() => load(nodes[0]!, "PUT", "/bench/direct/", SECONDS), "node PUT");
    await load(unthrottled.url, "PUT", "/bench/ceiling/", 2);
    const ceilingPut = await timed(
      () => load(unthrottled.url, "PUT", "/bench/ceiling/", SECONDS),
      "coordinator PUT, no replication running",
    );
    const replicator = await startReplicator();
    groups.replicator = [replicator.pid];
    if (process.env.BENCH_PROFILE_DIR) {
      console.log(`profiles: coordinator pid ${coordinator.pid}, replicator pid ${replicator.pid}`);
    }
    const drained = await drainQueue(coordinator.url, 600_000);
    console.log(`  the copies queued by the ceiling run: drained in ${(drained / 1000).toFixed(1)} s`);
    await load(coordinator.url, "PUT", "/bench/warm/", 2);
    const lagDone = probeLag(coordinator.url, nodesOf, Date.now() + SECONDS * 1000, 200);
    const coordPut = await timed(
      () => load(coordinator.url, "PUT", "/bench/coord/", SECONDS),
      "coordinator PUT",
    );
    const lags = await lagDone;

    // GET: the keys are on both nodes of shard 1.
    await fillKeys(nodes[0]!, "/bench/get/", KEYS, BYTES);
    await fillKeys(nodes[1]!, "/bench/get/", KEYS, BYTES);
    await load(nodes[0]!, "GET", "/bench/get/", 2);
    const directGet = await timed(() => load(nodes[0]!, "GET", "/bench/get/", SECONDS), "node GET");
    await load(coordinator.url, "GET", "/1:bench/get/", 2);
    const coordGet = await timed(
      () => load(coordinator.url, "GET", "/1:bench/get/", SECONDS),
      "coordinator GET",
    );
    const fronts = await compareFronts({
      mapFile,
      node: nodes[0]!,
      timed,
      load,
      setFront: (pids) => (groups.front = pids),
      after: (fn) => void cleanups.unshift(fn),
    });

    const putRatio = coordPut.rps / directPut.rps;
    const getRatio = coordGet.rps / directGet.rps;
    const lagP50 = percentile(lags, 50);
    const lagP99 = percentile(lags, 99);
    const verdict = (ok: boolean): string => (ok ? "met" : "NOT met");
    console.log(`PUT 1 KiB\n  node direct ${fmt(directPut)}\n  coordinator ${fmt(coordPut)}`);
    console.log(
      `  ratio       ${putRatio.toFixed(2)} (target ≥ ${TARGETS.put}) ${verdict(putRatio >= TARGETS.put && coordPut.errors === 0)}`,
    );
    console.log(`GET 1 KiB\n  node direct ${fmt(directGet)}\n  coordinator ${fmt(coordGet)}`);
    console.log(
      `  ratio       ${getRatio.toFixed(2)} (target ≥ ${TARGETS.get}) ${verdict(getRatio >= TARGETS.get && coordGet.errors === 0)}`,
    );
    console.log(
      `For comparison, no targets: the coordinator's own path with no replication running ${fmt(ceilingPut)} (${(ceilingPut.rps / directPut.rps).toFixed(2)} of the node);`,
    );
    for (const f of fronts) {
      console.log(
        `  GET through ${f.name.padEnd(44)} ${fmt(f.result)} (${(f.result.rps / directGet.rps).toFixed(2)} of the node)`,
      );
    }
    console.log(
      `replication lag during the coordinator PUT run: ${lags.length} probes, p50 ${lagP50.toFixed(0)} ms, p99 ${lagP99.toFixed(0)} ms (target ≤ ${TARGETS.lagP99Ms}) ${verdict(lagP99 <= TARGETS.lagP99Ms)}`,
    );
    console.log(`load average at the end: ${loadAvg()}`);
    const stats = (await (await fetch(`${coordinator.url}/stats`)).json()) as Record<string, unknown>;
    console.log(`coordinator /stats after the run: ${JSON.stringify(stats)}`);
    console.log(
      "\n| run | node req/s | node p99 ms | coordinator req/s | coordinator p99 ms | ratio | target |",
    );
    console.log("|---|---|---|---|---|---|---|");
    console.log(
      `| PUT 1 KiB, ${CONNECTIONS} conn | ${directPut.rps.toFixed(0)} | ${directPut.p99Ms.toFixed(2)} | ${coordPut.rps.toFixed(0)} | ${coordPut.p99Ms.toFixed(2)} | ${putRatio.toFixed(2)} | ≥ ${TARGETS.put} |`,
    );
    console.log(
      `| GET 1 KiB, ${CONNECTIONS} conn | ${directGet.rps.toFixed(0)} | ${directGet.p99Ms.toFixed(2)} | ${coordGet.rps.toFixed(0)} | ${coordGet.p99Ms.toFixed(2)} | ${getRatio.toFixed(2)} | ≥ ${TARGETS.get} |`,
    );
    console.log(
      `| PUT 1 KiB, coordinator with no replication running (ceiling) | | | ${ceilingPut.rps.toFixed(0)} | ${ceilingPut.p99Ms.toFixed(2)} | ${(ceilingPut.rps / directPut.rps).toFixed(2)} | |`,
    );
    for (const f of fronts) {
      console.log(
        `| GET 1 KiB through ${f.name} | | | ${f.result.rps.toFixed(0)} | ${f.result.p99Ms.toFixed(2)} | ${(f.result.rps / directGet.rps).toFixed(2)} | |`,
      );
    }
    console.log(
      `| replication lag p50 / p99 | | | ${lagP50.toFixed(0)} / ${lagP99.toFixed(0)} ms | | | p99 ≤ ${TARGETS.lagP99Ms} ms |`,
    );
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    for (const fn of cleanups) await fn().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
