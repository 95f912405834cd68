import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { spawn, spawnSync } from "node:child_process";
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
import { residentBytes, sampleResident, uploadLoop } from "./lib/upload-loop.js";

/**
 * `npm run bench:cluster`: a local multi-process cluster (2 shards × 2 storage nodes, 1 coordinator, 1
 * replicator; the cluster map in an embedded map file shared by the processes, the replication queue on a real
 * redis-server). In one run: PUT 1 KiB through the coordinator (every replica written before the 200, the
 * default; one copy + a queued task, the original's way; every replica, strict) vs straight to a node; PUT 1 MiB
 * through the coordinator vs straight to a node; the coordinator's memory during 50 MiB uploads; the errors
 * clients see when a node is SIGKILLed under load; GET 1 KiB through the coordinator vs straight from a node
 * (and through other fronts); the replication lag of the original's way.
 * Options (env): BENCH_SECONDS (default 8), BENCH_CONNECTIONS (default 64), BENCH_SYNC (batch|none, default
 * batch), BENCH_ROUNDS (alternating rounds of the node / live runs, 1 KiB and 1 MiB, default 3), BENCH_SKIP_GET=1 (no GET
 * rows: the PUT figures of the issue only).
 */
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 64);
/** `batch` (default: acknowledged after a shared fsync) or `none` (shows the coordinator's own cost). */
const SYNC = process.env.BENCH_SYNC ?? "batch";
const SKIP_GET = process.env.BENCH_SKIP_GET === "1";
/** Alternating rounds of the 1 KiB PUT straight to a node and through the coordinator. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BYTES = 1024;
const KEYS = 2000;
const MIB = 1024 * 1024;
/** Large uploads: 8 connections (as the node bench's 1 MiB case), 64 keys. */
const LARGE_CONNECTIONS = 8;
const LARGE_KEYS = 64;
const BIN = (name: string): string => fileURLToPath(new URL(`../src/cli/bin/${name}.js`, import.meta.url));
const PROXY_BASELINE = fileURLToPath(new URL("./lib/proxy-baseline.js", import.meta.url));
const TARGETS = {
  /** 1 KiB through the coordinator, every replica durable before the 200, against a PUT straight to a node. */
  put: 0.25,
  /** The same against the original's way (one copy + a queued task), same run. */
  putVsOne: 3,
  /** 1 MiB through the coordinator at 8 connections against the node's own 1 MiB rate / replicas per shard. */
  putLarge: 0.8,
  /** The coordinator's resident memory during 50 MiB uploads at 8 connections, bytes. */
  rssBytes: 200 * 1000 * 1000,
  get: 0.7,
  lagP99Ms: 500,
};
/** Replicas per shard in this cluster. */
const REPLICAS = 2;

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

/** The coordinator's handoffs so far (copy tasks queued for a node that did not take an upload). */
async function handoffs(coordinator: string): Promise<number> {
  const text = await (await fetch(`${coordinator}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^backpack_coordinator_handoffs_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
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

/** A run straight to node 1 and one through the coordinator, and the ratio coordinator / node. */
interface Round {
  direct: LoadResult;
  live: LoadResult;
  ratio: number;
}

async function main(): Promise<void> {
  const cpu = cpus()[0]?.model ?? "unknown cpu";
  console.log("# backpack cluster benchmark");
  console.log(
    `machine: ${cpus().length} × ${cpu}, ${(totalmem() / 1024 ** 3).toFixed(1)} GiB RAM; Node ${process.version}`,
  );
  console.log(
    `load tool: ${hasWrk() ? "wrk (2 threads, a distinct key per request from a key range)" : "autocannon"}; SIGKILL and 50 MiB runs: upload loops in this process (undici)`,
  );
  console.log(
    `method: 4 storage nodes (sync=${SYNC}) in 2 shards × 2, 1 coordinator, 1 replicator (concurrency 64, repair off), each its own process;`,
  );
  console.log("cluster map: the embedded map file; replication queue: a real redis-server (AOF on).");
  console.log(`load average at start: ${loadAvg()} (other work on the machine skews every figure)`);
  console.log(
    `PUT ${BYTES} B with ${CONNECTIONS} connections, ${SECONDS} s per run after a 2 s warm-up: ${ROUNDS} rounds of a run straight to one node`,
  );
  console.log(
    "and one through the coordinator, live (the default: every replica written at once, durable before the 200), in",
  );
  console.log(
    "alternating order, each run from quiet nodes (no compaction left from the run before), the median round reported; then through the coordinator one (the original's",
  );
  console.log(
    "way: one copy + a queued task, copied by the replicator meanwhile), all (every replica, strict). PUT 1 MiB with 8",
  );
  console.log(
    "connections, node vs coordinator (live), in alternating rounds likewise. The coordinator's RSS (from /proc, every 50 ms) during 50 MiB uploads at 8",
  );
  console.log(
    `connections. Errors clients see when node 1 is SIGKILLed under a ${CONNECTIONS}-connection 1 KiB upload load.`,
  );
  console.log(
    "GET 1 KiB: coordinator /1:<key> vs the node itself. Lag (one mode): a probe upload every 200 ms, polled every 25 ms.\n",
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
    const nodeArgs = (i: number, port: string): string[] => [
      "node",
      join(dir, `node-${i}`),
      "127.0.0.1",
      port,
      "--sync",
      SYNC,
    ];
    for (let i = 1; i <= 4; i++) {
      const node = await startServerProcess(BIN("backpack"), nodeArgs(i, "0"));
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
    // Repair off: the direct PUTs to node 1 leave its replicas different on purpose, and repairing them in the
    // background would load the runs after them. At the priority of the other processes: the original's mode
    // (one copy + a queued task) waits for its copies, and is compared here as it ran before replicators
    // yielded the CPU by default.
    const replicator = await startServerProcess(BIN("backpack-replicator"), [
      zk,
      "/",
      "64",
      "--listen",
      "127.0.0.1:0",
      "--repair-every",
      "0",
      "--nice",
      "0",
    ]);
    servers.push(replicator);
    if (process.env.BENCH_PROFILE_DIR) {
      console.log(`profiles: coordinator pid ${coordinator.pid}, replicator pid ${replicator.pid}`);
    }

    const load = (
      url: string,
      method: "GET" | "PUT",
      prefix: string,
      durationSec: number,
      o: { headers?: Record<string, string>; bodyBytes?: number; connections?: number; keys?: number } = {},
    ): Promise<LoadResult> =>
      runLoad({
        url,
        method,
        connections: o.connections ?? CONNECTIONS,
        durationSec,
        pathPrefix: prefix,
        keys: o.keys ?? KEYS,
        bodyBytes: method === "PUT" ? (o.bodyBytes ?? BYTES) : undefined,
        headers: o.headers,
      });

    // CPU time per request of each kind of process, per run: where the machine's two cores went. `front`: the
    // process in front of the nodes in a comparison row (nginx's worker, a baseline proxy).
    const groups: Record<string, number[]> = {
      nodes: servers.slice(0, 4).map((s) => s.pid),
      coordinator: [coordinator.pid],
      replicator: [replicator.pid],
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
    // Before a compared run: until the nodes are quiet (under a tenth of a core for half a second, at most 60 s),
    // so that no run pays for the compaction of the garbage the run before it left (a run of 1 MiB overwrites
    // leaves a node gigabytes to compact); each still pays for what its own writes set off.
    const settle = async (): Promise<void> => {
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        const before = cpuNow().nodes ?? 0;
        await new Promise((resolve) => setTimeout(resolve, 500));
        if ((cpuNow().nodes ?? 0) - before < 0.05) return;
      }
    };
    const timed = async (run: () => Promise<LoadResult>, what: string): Promise<LoadResult> => {
      const before = cpuNow();
      const handedOff = await handoffs(coordinator.url);
      const result = await run();
      const after = cpuNow();
      const more = (await handoffs(coordinator.url)) - handedOff;
      if (more > 0) console.log(`  ${what}: ${more} copies handed off to the queue (a node cut or skipped)`);
      const parts = Object.keys(groups)
        .filter((g) => (groups[g]?.length ?? 0) > 0)
        .map((g) => ({ g, us: (((after[g] ?? 0) - (before[g] ?? 0)) * 1e6) / Math.max(1, result.requests) }))
        .filter((p) => p.us >= 0.5)
        .map((p) => `${p.g} ${p.us.toFixed(0)}`);
      console.log(
        `  CPU µs per request, ${what}: ${parts.join(", ")}${result.errors ? ` (${result.errors} errors)` : ""}`,
      );
      return result;
    };
    const put = async (
      url: string,
      prefix: string,
      what: string,
      o: Parameters<typeof load>[4] = {},
    ): Promise<LoadResult> => {
      await load(url, "PUT", prefix, 2, o);
      return timed(() => load(url, "PUT", prefix, SECONDS, o), what);
    };

    // PUT 1 KiB: rounds of a run straight to node 1 and a run through the coordinator (live, the default), in
    // alternating order, each from quiet nodes (`settle`); the round with the median ratio is reported. Then
    // all; then one (the original's way) with lag probes alongside, and its queued copies drained.
    const alternate = async (
      size: string,
      o: Parameters<typeof load>[4] = {},
    ): Promise<{ rounds: Round[]; median: Round }> => {
      const [direct, live] = [`/bench/direct-${size}/`, `/bench/live-${size}/`];
      await load(nodes[0]!, "PUT", direct, 2, o);
      await load(coordinator.url, "PUT", live, 2, o);
      const rounds: Round[] = [];
      for (let i = 0; i < ROUNDS; i++) {
        const runDirect = async (): Promise<LoadResult> => {
          await settle();
          return timed(() => load(nodes[0]!, "PUT", direct, SECONDS, o), `node PUT ${size} (round ${i + 1})`);
        };
        const runLive = async (): Promise<LoadResult> => {
          await settle();
          return timed(
            () => load(coordinator.url, "PUT", live, SECONDS, o),
            `coordinator PUT ${size}, live (round ${i + 1})`,
          );
        };
        let d: LoadResult;
        let l: LoadResult;
        if (i % 2 === 0) {
          d = await runDirect();
          l = await runLive();
        } else {
          l = await runLive();
          d = await runDirect();
        }
        rounds.push({ direct: d, live: l, ratio: l.rps / d.rps });
      }
      return {
        rounds,
        median: [...rounds].sort((a, b) => a.ratio - b.ratio)[Math.floor(rounds.length / 2)]!,
      };
    };
    const { rounds, median } = await alternate("1KiB");
    const directPut = median.direct;
    const livePut = median.live;
    const allPut = await put(coordinator.url, "/bench/all/", "coordinator PUT, all", {
      headers: { "x-backpack-replicas": "all" },
    });
    const one = { headers: { "x-backpack-replicas": "one" } };
    await load(coordinator.url, "PUT", "/bench/one/", 2, one);
    const lagDone = probeLag(coordinator.url, nodesOf, Date.now() + SECONDS * 1000, 200);
    const onePut = await timed(
      () => load(coordinator.url, "PUT", "/bench/one/", SECONDS, one),
      "coordinator PUT, one (the original's way)",
    );
    const lags = await lagDone;
    const drained = await drainQueue(coordinator.url, 600_000);
    console.log(`  the copies queued by the one run: drained ${(drained / 1000).toFixed(1)} s after it`);

    // PUT 1 MiB, 8 connections: straight to node 1, and through the coordinator (both replicas written), in
    // alternating rounds as above (a run that overwrote 64 keys of 1 MiB leaves node 1 gigabytes to compact).
    const largeRuns = await alternate("1MiB", {
      bodyBytes: MIB,
      connections: LARGE_CONNECTIONS,
      keys: LARGE_KEYS,
    });
    const directLarge = largeRuns.median.direct;
    const liveLarge = largeRuns.median.live;
    // Baseline: the node's own 1 MiB rate beside a process that copies memory all the time, as the coordinator
    // and the other node of the shard do during the live runs: what sharing two cores with them costs it.
    await settle();
    const hog = spawn(process.execPath, [
      "-e",
      "const a = Buffer.alloc(64 << 20), b = Buffer.alloc(64 << 20); for (;;) a.copy(b);",
    ]);
    let directBesideHog: LoadResult;
    try {
      directBesideHog = await timed(
        () =>
          load(nodes[0]!, "PUT", "/bench/direct-1MiB/", SECONDS, {
            bodyBytes: MIB,
            connections: LARGE_CONNECTIONS,
            keys: LARGE_KEYS,
          }),
        "node PUT 1MiB beside a process copying memory",
      );
    } finally {
      hog.kill("SIGKILL");
    }

    // The coordinator's memory while it streams 50 MiB uploads to both replicas, 8 at a time.
    const rss = await hugeUploads(coordinator);

    // GET: the keys are on both nodes of shard 1.
    let gets:
      | { directGet: LoadResult; coordGet: LoadResult; fronts: { name: string; result: LoadResult }[] }
      | undefined;
    if (!SKIP_GET) {
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
      gets = { directGet, coordGet, fronts };
    }

    // Last: node 1 SIGKILLed under load (restarted afterwards, so that its queued copies land).
    const kill = await killUnderLoad(coordinator.url, servers[0]!);
    servers[0] = await startServerProcess(BIN("backpack"), nodeArgs(1, new URL(nodes[0]!).port));
    const afterKill = await drainQueue(coordinator.url, 600_000).catch(() => Number.NaN);
    console.log(`  node 1 restarted; its handed-off copies landed ${(afterKill / 1000).toFixed(1)} s later`);

    const liveRatio = livePut.rps / directPut.rps;
    const vsOne = livePut.rps / onePut.rps;
    const largeRatio = liveLarge.rps / (directLarge.rps / REPLICAS);
    const lagP50 = percentile(lags, 50);
    const lagP99 = percentile(lags, 99);
    const verdict = (ok: boolean): string => (ok ? "met" : "NOT met");
    const mb = (bytes: number): string => (bytes / 1e6).toFixed(0);
    console.log(
      `PUT 1 KiB\n  node direct      ${fmt(directPut)}\n  coordinator live ${fmt(livePut)}\n  coordinator all  ${fmt(allPut)}\n  coordinator one  ${fmt(onePut)}`,
    );
    console.log(
      `  rounds (live / node): ${rounds.map((r) => `${r.live.rps.toFixed(0)} / ${r.direct.rps.toFixed(0)} = ${r.ratio.toFixed(3)}`).join(", ")}; the median round above`,
    );
    console.log(
      `  live / node     ${liveRatio.toFixed(3)} (target ≥ ${TARGETS.put}) ${verdict(liveRatio >= TARGETS.put && livePut.errors === 0)}`,
    );
    console.log(
      `  live / one      ${vsOne.toFixed(2)} (target ≥ ${TARGETS.putVsOne}) ${verdict(vsOne >= TARGETS.putVsOne)}`,
    );
    console.log(
      `PUT 1 MiB, ${LARGE_CONNECTIONS} connections\n  node direct      ${fmt(directLarge)} (${directLarge.rps.toFixed(0)} MiB/s)\n  coordinator live ${fmt(liveLarge)} (${liveLarge.rps.toFixed(0)} MiB/s)`,
    );
    console.log(
      `  live / (node / ${REPLICAS}) ${largeRatio.toFixed(2)} (target ≥ ${TARGETS.putLarge}) ${verdict(largeRatio >= TARGETS.putLarge && liveLarge.errors === 0)}`,
    );
    console.log(
      `  (baseline) node direct beside a process copying memory ${fmt(directBesideHog)} (${directBesideHog.rps.toFixed(0)} MiB/s): ${(directBesideHog.rps / directLarge.rps).toFixed(2)} of its rate alone`,
    );
    console.log(
      `coordinator RSS during 50 MiB uploads at ${LARGE_CONNECTIONS} connections: ${mb(rss.before)} MB before, at most ${mb(rss.max)} MB (${rss.uploads} uploads, ${rss.errors} errors) (target ≤ ${mb(TARGETS.rssBytes)}) ${verdict(rss.max <= TARGETS.rssBytes && rss.errors === 0)}`,
    );
    console.log(
      `node 1 SIGKILLed under load: ${kill.total} uploads, errors ${kill.firstSecond} in the first second after the kill, ${kill.after} after it (target 0) ${verdict(kill.after === 0)}; before the kill ${kill.before}`,
    );
    console.log(
      `replication lag of the one mode: ${lags.length} probes, p50 ${lagP50.toFixed(0)} ms, p99 ${lagP99.toFixed(0)} ms (target ≤ ${TARGETS.lagP99Ms}) ${verdict(lagP99 <= TARGETS.lagP99Ms)}`,
    );
    if (gets) {
      const getRatio = gets.coordGet.rps / gets.directGet.rps;
      console.log(`GET 1 KiB\n  node direct ${fmt(gets.directGet)}\n  coordinator ${fmt(gets.coordGet)}`);
      console.log(
        `  ratio       ${getRatio.toFixed(2)} (target ≥ ${TARGETS.get}) ${verdict(getRatio >= TARGETS.get && gets.coordGet.errors === 0)}`,
      );
      for (const f of gets.fronts) {
        console.log(
          `  GET through ${f.name.padEnd(44)} ${fmt(f.result)} (${(f.result.rps / gets.directGet.rps).toFixed(2)} of the node)`,
        );
      }
    }
    console.log(`load average at the end: ${loadAvg()}`);
    const stats = (await (await fetch(`${coordinator.url}/stats`)).json()) as Record<string, unknown>;
    console.log(`coordinator /stats after the run: ${JSON.stringify(stats)}`);
    console.log("\n| figure | measured | target |");
    console.log("|---|---|---|");
    console.log(
      `| PUT 1 KiB, ${CONNECTIONS} conn: coordinator (live) / node direct, median of ${ROUNDS} rounds (${rounds.map((r) => r.ratio.toFixed(3)).join(", ")}) | ${livePut.rps.toFixed(0)} / ${directPut.rps.toFixed(0)} = ${liveRatio.toFixed(3)} | ≥ ${TARGETS.put} |`,
    );
    console.log(
      `| the same, live / one (the original's way) | ${livePut.rps.toFixed(0)} / ${onePut.rps.toFixed(0)} = ${vsOne.toFixed(2)} | ≥ ${TARGETS.putVsOne} |`,
    );
    console.log(
      `| (for comparison) all / node direct | ${allPut.rps.toFixed(0)} / ${directPut.rps.toFixed(0)} = ${(allPut.rps / directPut.rps).toFixed(3)} | |`,
    );
    console.log(
      `| PUT 1 MiB, ${LARGE_CONNECTIONS} conn: coordinator (live) / (node direct / ${REPLICAS}), median of ${ROUNDS} rounds (${largeRuns.rounds.map((r) => (r.ratio * REPLICAS).toFixed(2)).join(", ")}) | ${liveLarge.rps.toFixed(0)} / (${directLarge.rps.toFixed(0)} / ${REPLICAS}) MiB/s = ${largeRatio.toFixed(2)} | ≥ ${TARGETS.putLarge} |`,
    );
    console.log(
      `| coordinator RSS during 50 MiB uploads, ${LARGE_CONNECTIONS} conn | ${mb(rss.max)} MB | ≤ ${mb(TARGETS.rssBytes)} MB |`,
    );
    console.log(`| client-visible errors after the first second of a node SIGKILL | ${kill.after} | 0 |`);
    console.log(
      `| (for comparison) replication lag of the one mode, p50 / p99 | ${lagP50.toFixed(0)} / ${lagP99.toFixed(0)} ms | |`,
    );
    if (gets) {
      console.log(
        `| GET 1 KiB, ${CONNECTIONS} conn: coordinator / node direct | ${gets.coordGet.rps.toFixed(0)} / ${gets.directGet.rps.toFixed(0)} = ${(gets.coordGet.rps / gets.directGet.rps).toFixed(2)} | ≥ ${TARGETS.get} |`,
      );
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    for (const fn of cleanups) await fn().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/** 50 MiB uploads through the coordinator, 8 at a time, for BENCH_SECONDS; its RSS sampled meanwhile. */
async function hugeUploads(
  coordinator: ServerProcess,
): Promise<{ before: number; max: number; uploads: number; errors: number }> {
  const before = residentBytes(coordinator.pid) ?? 0;
  const sampler = sampleResident(coordinator.pid);
  const until = performance.now() + SECONDS * 1000;
  const answers = await uploadLoop({
    url: coordinator.url,
    concurrency: LARGE_CONNECTIONS,
    body: Buffer.alloc(50 * MIB, 7),
    prefix: "bench/huge/",
    keys: LARGE_CONNECTIONS,
    running: () => performance.now() < until,
  });
  const max = sampler.stop();
  const errors = answers.filter((a) => a.status !== 200).length;
  console.log(
    `  50 MiB uploads: ${answers.length} in ${SECONDS} s (${errors} errors); coordinator RSS ${(before / 1e6).toFixed(0)} MB before, at most ${(max / 1e6).toFixed(0)} MB`,
  );
  return { before, max, uploads: answers.length, errors };
}

/**
 * 1 KiB uploads through the coordinator from CONNECTIONS loops for 2 + BENCH_SECONDS s; `victim` (node 1) is
 * SIGKILLed 2 s in. Errors (any answer but 200, or no answer) are counted before the kill, in the first second
 * after it and after that.
 */
async function killUnderLoad(
  coordinator: string,
  victim: ServerProcess,
): Promise<{ total: number; before: number; firstSecond: number; after: number }> {
  const started = performance.now();
  const until = started + (2 + SECONDS) * 1000;
  let killedAt = Number.POSITIVE_INFINITY;
  const done = uploadLoop({
    url: coordinator,
    concurrency: CONNECTIONS,
    body: Buffer.alloc(BYTES, 3),
    prefix: "bench/kill/",
    keys: KEYS,
    running: () => performance.now() < until,
  });
  await sleep(2000);
  process.kill(victim.pid, "SIGKILL");
  killedAt = performance.now();
  const answers = await done;
  const errors = answers.filter((a) => a.status !== 200);
  const result = {
    total: answers.length,
    before: errors.filter((a) => a.at < killedAt).length,
    firstSecond: errors.filter((a) => a.at >= killedAt && a.at < killedAt + 1000).length,
    after: errors.filter((a) => a.at >= killedAt + 1000).length,
  };
  console.log(
    `  node 1 SIGKILLed under load: ${result.total} uploads; errors ${result.before} before, ${result.firstSecond} in the first second after, ${result.after} later`,
  );
  return result;
}

await main();
