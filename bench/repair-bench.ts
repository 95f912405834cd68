import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpus, tmpdir, totalmem } from "node:os";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, createServer, type Server } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { createAgent } from "../src/client/http-agent.js";
import { NodeClient } from "../src/client/node-client.js";
import { LeanClient } from "../src/client/lean-client.js";
import { EmbeddedClusterMap } from "../src/cluster/embedded.js";
import { silentLogger } from "../src/common/logger.js";
import { AntiEntropy } from "../src/replicator/anti-entropy.js";
import type { ShardReport } from "../src/replicator/repair-report.js";
import { Copier } from "../src/replicator/copier.js";
import { REPLICATOR_DEFAULTS } from "../src/replicator/config.js";
import { openStore } from "../src/storage/store.js";
import { runLoad, type LoadResult } from "./lib/load.js";
import { pacedLoad } from "./lib/paced-load.js";
import { startServerProcess, type ServerProcess } from "./lib/server-process.js";

/**
 * `npm run bench:repair`: what self-healing costs and how fast it is, each figure against a baseline measured
 * in the same run, storage nodes in processes of their own (sync=batch).
 * 1. Refill: a node holding BENCH_FILES files of 1-16 KiB, its replica wiped; one comparison refills it (the
 *    replicator's code, AntiEntropy over its NodeClient and Copier, in this process: rates unbounded, the
 *    default 8 repairs at once) against a plain GET→PUT copy loop of the same files to a third
 *    node, 8 at a time.
 * 2. Comparison: two identical replicas of BENCH_COMPARE_FILES files; time and bytes on the wire (counted by a
 *    TCP relay in front of each node) of one comparison.
 * 3. Impact: client GET and PUT p99 at a steady rate (BENCH_GET_RATE 2000/s, BENCH_PUT_RATE 1000/s, an open
 *    loop in a process of its own, its first second not counted) on the source node while a `backpack
 *    replicator` process at its defaults (rates, priority) refills its replica and the node scrubs at its
 *    default rate, against the same load with neither; rounds alternate (the node is restarted with and
 *    without scrub). As a baseline, the same load beside a plain CPU hog as busy as the repair was (the
 *    replicator and the replica node, measured in the round before).
 * 4. Scrub: its rate at the default setting (from the node's /stats), and GET throughput at 64 connections with
 *    it against without.
 * Env: BENCH_FILES (100000), BENCH_COMPARE_FILES (1000000), BENCH_SECONDS (5), BENCH_ROUNDS (3),
 * BENCH_PARTS (refill,compare,impact,scrub), BENCH_BUSY (repair,scrub: what runs in the impact figures' busy
 * rounds; with BENCH_PARTS=impact, `repair` or `scrub` alone tells which costs what).
 */
const FILES = Number(process.env.BENCH_FILES ?? 100_000);
const COMPARE_FILES = Number(process.env.BENCH_COMPARE_FILES ?? 1_000_000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const PARTS = (process.env.BENCH_PARTS ?? "refill,compare,impact,scrub").split(",");
const BUSY = (process.env.BENCH_BUSY ?? "repair,scrub").split(",");
const BACKPACK = fileURLToPath(new URL("../src/cli/bin/backpack.js", import.meta.url));
const CONCURRENCY = 8;
/** The steady client load of the impact figures: GET 1-16 KiB files, PUT 4 KiB files. */
const GET_RATE = Number(process.env.BENCH_GET_RATE ?? 2000);
const PUT_RATE = Number(process.env.BENCH_PUT_RATE ?? 1000);
/** A restarted node is loaded this long before it is measured, and repair runs this long before. */
const NODE_WARM_SEC = 8;
const REPAIR_SETTLE_SEC = 5;

const rows: string[] = [];
const servers: ServerProcess[] = [];

function row(
  figure: string,
  value: string,
  baseline: string,
  ratio: string,
  target: string,
  met: boolean | undefined,
): void {
  rows.push(
    `| ${figure} | ${value} | ${baseline} | ${ratio} | ${target} | ${met === undefined ? "" : met ? "met" : "NOT met"} |`,
  );
}

async function startNode(dir: string, args: string[] = []): Promise<ServerProcess> {
  const node = await startServerProcess(BACKPACK, ["node", dir, "127.0.0.1", "0", ...args], 120_000);
  servers.push(node);
  return node;
}

async function stopNode(node: ServerProcess): Promise<void> {
  servers.splice(servers.indexOf(node), 1);
  await node.stop();
}

/** A deterministic size of 1-16 KiB for file `i`. */
function sizeOf(i: number): number {
  return 1024 + ((i * 2_654_435_761) % (15 * 1024 + 1));
}

/** PUTs files 0..n-1 (`file/<i>`, 1-16 KiB) to `base`, 32 at a time. */
async function fill(base: string, n: number): Promise<void> {
  const agent = new Agent({ connections: 32 });
  const body = Buffer.alloc(16 * 1024, "r");
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < n) {
          const i = next++;
          const res = await request(`${base}/file/${i}`, {
            method: "PUT",
            body: body.subarray(0, sizeOf(i)),
            dispatcher: agent,
          });
          await res.body.dump();
          if (res.statusCode !== 201) throw new Error(`fill: PUT file/${i} answered ${res.statusCode}`);
        }
      }),
    );
  } finally {
    await agent.close();
  }
}

/** An embedded cluster map in `dir` (started) holding shard `1` of `nodes` (id → URL), its queue embedded too. */
async function shardMap(dir: string, nodes: Record<string, string>): Promise<EmbeddedClusterMap> {
  const map = new EmbeddedClusterMap({ file: join(dir, "cluster.json") });
  await map.start();
  await map.init({ key: `file:${join(dir, "queue")}`, servers: [] });
  for (const [id, url] of Object.entries(nodes)) await map.addServer(id, url);
  await map.addShard("1", Object.keys(nodes), 1e15);
  return map;
}

/**
 * A `backpack replicator` process over shard `1` of `nodes`, everything at its defaults (repair rates, 8 repairs
 * at once, its lower CPU priority): the repair that runs beside a cluster's nodes. It compares the shard at once.
 */
async function startReplicator(dir: string, nodes: Record<string, string>): Promise<ServerProcess> {
  await (await shardMap(dir, nodes)).stop();
  const replicator = await startServerProcess(BACKPACK, [
    "replicator",
    `file:${join(dir, "cluster.json")}`,
    "/",
    "--no-ring",
  ]);
  servers.push(replicator);
  return replicator;
}

/** Repair over a shard `1` of `servers` (id → URL), with the replicator's code, in this process. */
async function repairer(
  dir: string,
  nodes: Record<string, string>,
  rates: { filesPerSec: number; bytesPerSec: number },
): Promise<{ repair: AntiEntropy; close: () => Promise<void> }> {
  const map = await shardMap(dir, nodes);
  const agent = createAgent({ connections: 32 });
  const reader = new LeanClient();
  const client = new NodeClient(agent, {}, reader);
  const repair = new AntiEntropy(map, client, new Copier(client, { timeoutMs: 30_000 }), silentLogger, {
    intervalMs: 0,
    ...rates,
    concurrency: CONCURRENCY,
    timeoutMs: 30_000,
  });
  return {
    repair,
    close: async () => {
      reader.destroy();
      await agent.close();
      await map.stop();
    },
  };
}

const UNBOUNDED = { filesPerSec: 1e9, bytesPerSec: 1e15 };

async function entries(url: string): Promise<number> {
  const res = await request(`${url}/_backpack/digest`);
  return ((await res.body.json()) as { entries: number }).entries;
}

async function refill(root: string): Promise<void> {
  const source = await startNode(join(root, "a"));
  const t0 = performance.now();
  await fill(source.url, FILES);
  console.log(
    `filled the source node with ${FILES} files of 1-16 KiB in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const wiped = await startNode(join(root, "b"));
  const loopTarget = await startNode(join(root, "c"));

  // The baseline: GET from the source, PUT to the target, 8 at a time.
  const agent = new Agent({ connections: 2 * CONCURRENCY });
  let next = 0;
  const l0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < FILES) {
        const i = next++;
        const got = await request(`${source.url}/file/${i}`, { dispatcher: agent });
        const body = Buffer.from(await got.body.arrayBuffer());
        const put = await request(`${loopTarget.url}/file/${i}`, { method: "PUT", body, dispatcher: agent });
        await put.body.dump();
        if (got.statusCode !== 200 || put.statusCode !== 201) throw new Error(`copy loop: file/${i}`);
      }
    }),
  );
  const loopSec = (performance.now() - l0) / 1000;
  await agent.close();

  const { repair, close } = await repairer(root, { a: source.url, b: wiped.url }, UNBOUNDED);
  const r0 = performance.now();
  const report = await repair.compareShard("1");
  const repairSec = (performance.now() - r0) / 1000;
  await close();
  const held = await entries(wiped.url);
  if (held !== FILES || report.copied !== FILES) {
    throw new Error(`refill incomplete: ${held} entries, ${report.copied} copied of ${FILES}`);
  }
  const loopRate = FILES / loopSec;
  const repairRate = FILES / repairSec;
  console.log(
    `copy loop: ${loopSec.toFixed(1)} s (${loopRate.toFixed(0)} files/s); refill by repair: ${repairSec.toFixed(1)} s (${repairRate.toFixed(0)} files/s)`,
  );
  row(
    `refill of a wiped node, ${FILES} files of 1-16 KiB (files/s)`,
    repairRate.toFixed(0),
    `${loopRate.toFixed(0)} (GET→PUT loop, ${CONCURRENCY} at a time)`,
    (repairRate / loopRate).toFixed(2),
    "≥ 0.7",
    repairRate / loopRate >= 0.7,
  );
  for (const n of [source, wiped, loopTarget]) await stopNode(n);
}

/** A TCP relay that counts the bytes going both ways. */
async function countingRelay(
  target: string,
): Promise<{ url: string; bytes: () => number; close: () => Promise<void> }> {
  const { hostname, port } = new URL(target);
  let bytes = 0;
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: hostname, port: Number(port) });
    client.on("data", (d: Buffer) => (bytes += d.length));
    upstream.on("data", (d: Buffer) => (bytes += d.length));
    client.pipe(upstream).pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${addr.port}`,
    bytes: () => bytes,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

async function compare(root: string): Promise<void> {
  const one = join(root, "d");
  const t0 = performance.now();
  const store = await openStore({ dir: one, sync: "none", readCacheBytes: 0 });
  const body = Buffer.alloc(16, "c");
  const stamp = Date.now() * 1000;
  for (let i = 0; i < COMPARE_FILES; i += 1024) {
    const batch: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(COMPARE_FILES, i + 1024); j++) {
      batch.push(store.put(`same/${j}`, body, { maxBytes: 1024, version: { stamp: stamp + j, origin: 7 } }));
    }
    await Promise.all(batch);
  }
  await store.close();
  const copy = spawnSync("cp", ["-a", one, join(root, "e")]);
  if (copy.status !== 0) throw new Error(`cp: ${copy.stderr.toString()}`);
  console.log(
    `two identical replicas of ${COMPARE_FILES} files made in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  const d = await startNode(one, ["--scrub-rate", "0"]);
  const e = await startNode(join(root, "e"), ["--scrub-rate", "0"]);
  const relays = await Promise.all([countingRelay(d.url), countingRelay(e.url)]);
  const { repair, close } = await repairer(
    join(root, "cmp"),
    { d: relays[0].url, e: relays[1].url },
    UNBOUNDED,
  );
  const c0 = performance.now();
  const report: ShardReport = await repair.compareShard("1");
  const ms = performance.now() - c0;
  await close();
  const bytes = relays.reduce((n, r) => n + r.bytes(), 0);
  for (const r of relays) await r.close();
  if (report.differingBuckets !== 0 || report.compared.length !== 2) {
    throw new Error(`the replicas differ: ${JSON.stringify(report).slice(0, 500)}`);
  }
  console.log(
    `one comparison: ${ms.toFixed(0)} ms, ${bytes} bytes on the wire, ${report.differingBuckets} differing buckets`,
  );
  row(
    `one comparison of two identical replicas of ${COMPARE_FILES} files: time`,
    `${(ms / 1000).toFixed(2)} s`,
    "",
    "",
    "≤ 10 s",
    ms <= 10_000,
  );
  row(
    `the same: bytes transferred`,
    `${(bytes / 1024).toFixed(0)} KiB`,
    "",
    "",
    "≤ 1 MB",
    bytes <= 1_000_000,
  );
  await stopNode(d);
  await stopNode(e);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
}

/** Scrub figures of a node's /stats. */
async function scrubStats(url: string): Promise<{ bytesVerified: number; rateBytesPerSec: number }> {
  const res = await request(`${url}/stats`);
  const doc = (await res.body.json()) as {
    store: { scrub: { bytesVerified: number; rateBytesPerSec: number } };
  };
  return doc.store.scrub;
}

/** A process that keeps `cores` of one core busy (spinning `cores` × 10 ms of every 10 ms). */
function burn(cores: number): ChildProcess {
  const slice = Math.min(10, Math.max(0, cores * 10));
  return spawn(
    process.execPath,
    [
      "-e",
      `setInterval(() => { const end = performance.now() + ${slice}; while (performance.now() < end); }, 10);`,
    ],
    { stdio: "ignore" },
  );
}

async function impactAndScrub(root: string): Promise<void> {
  const dir = join(root, "a");
  // The source of part 1 when it ran; else filled here.
  let node = await startNode(dir, ["--scrub-rate", "0"]);
  if ((await entries(node.url)) < FILES) await fill(node.url, FILES);
  const replica = await startNode(join(root, "impact-replica"));
  const load = (method: "GET" | "PUT", connections: number): Promise<LoadResult> =>
    runLoad({
      url: node.url,
      method,
      connections,
      durationSec: SECONDS,
      pathPrefix: method === "GET" ? "/file/" : "/put/",
      keys: method === "GET" ? FILES : 10_000,
      bodyBytes: method === "PUT" ? 4096 : undefined,
    });
  const restart = async (scrub: boolean): Promise<void> => {
    await stopNode(node);
    node = await startNode(dir, scrub ? [] : ["--scrub-rate", "0"]);
    // Warm, so that the rounds measure a node that has been running: its compiled code and read cache, and the
    // work of its first seconds (reading its index, the scrub starting) done; at the client's steady rate (a
    // saturating warm-up leaves its garbage to the round after it).
    await pacedLoad({
      url: node.url,
      method: "GET",
      rate: GET_RATE,
      durationSec: NODE_WARM_SEC,
      pathPrefix: "/file/",
      keys: FILES,
    });
  };
  // Client traffic at a steady rate (an open loop: p99 then shows interference, not the queueing of a
  // saturated server, which any extra work on a 2-core machine would inflate).
  const paced = async (method: "GET" | "PUT"): Promise<number> => {
    const r = await pacedLoad({
      url: node.url,
      method,
      rate: method === "GET" ? GET_RATE : PUT_RATE,
      durationSec: SECONDS,
      pathPrefix: method === "GET" ? "/file/" : "/put/",
      keys: method === "GET" ? FILES : 10_000,
      bodyBytes: method === "PUT" ? 4096 : undefined,
    });
    if (r.errors > 0) throw new Error(`${method}: ${r.errors} errors`);
    return r.p99Ms;
  };
  const quiet: { get: number[]; put: number[]; rps: number[] } = { get: [], put: [], rps: [] };
  const busy: { get: number[]; put: number[] } = { get: [], put: [] };
  // The same load beside a plain CPU hog as busy as repair was (the replicator and the replica node).
  const hog: { get: number[]; put: number[]; cores: number[] } = { get: [], put: [], cores: [] };
  const scrubbing: { rps: number[] } = { rps: [] };
  /** Files per second the replicator copied to the replica in each busy round. */
  const refilled: number[] = [];
  let scrubRate = 0;
  for (let round = 0; round < ROUNDS; round++) {
    if (PARTS.includes("impact") || PARTS.includes("scrub")) {
      await restart(false);
      quiet.get.push(await paced("GET"));
      quiet.put.push(await paced("PUT"));
      if (PARTS.includes("scrub")) quiet.rps.push((await load("GET", 64)).rps);
    }
    await restart(PARTS.includes("scrub") || BUSY.includes("scrub"));
    if (PARTS.includes("impact") && !BUSY.includes("repair")) {
      busy.get.push(await paced("GET"));
      busy.put.push(await paced("PUT"));
    } else if (PARTS.includes("impact")) {
      // A replicator refills the replica at its defaults (200 files/s, 32 MB/s) while the node scrubs.
      const replicator = await startReplicator(join(root, `impact-${round}`), {
        a: node.url,
        b: replica.url,
      });
      const [before, since] = [await entries(replica.url), performance.now()];
      // Its comparison under way: the digests compared, the source's key order built at its first listing
      // (once in a node's life).
      await new Promise((r) => setTimeout(r, REPAIR_SETTLE_SEC * 1000));
      const busyCpu = (): number => (replicator.cpuSeconds() ?? 0) + (replica.cpuSeconds() ?? 0);
      const [cpu0, t0] = [busyCpu(), performance.now()];
      busy.get.push(await paced("GET"));
      busy.put.push(await paced("PUT"));
      const cores = (busyCpu() - cpu0) / ((performance.now() - t0) / 1000);
      const copied = (await entries(replica.url)) - before;
      await stopNode(replicator);
      if (copied <= 0) throw new Error("impact: the replicator repaired nothing during its round");
      refilled.push(copied / ((performance.now() - since) / 1000));
      hog.cores.push(cores);
      const hogger = burn(cores);
      hog.get.push(await paced("GET"));
      hog.put.push(await paced("PUT"));
      hogger.kill();
    }
    // Last in the round, as in the quiet half: a saturating load leaves garbage to collect in the seconds after.
    // On a node just restarted: a restart begins a scrub pass at once, so the scrub is running.
    if (PARTS.includes("scrub")) {
      await restart(true);
      const s0 = await scrubStats(node.url);
      const t0 = performance.now();
      scrubbing.rps.push((await load("GET", 64)).rps);
      const s1 = await scrubStats(node.url);
      scrubRate = (s1.bytesVerified - s0.bytesVerified) / ((performance.now() - t0) / 1000);
    }
  }
  if (PARTS.includes("impact")) {
    for (const m of ["get", "put"] as const) {
      const ratio = median(busy[m]) / median(quiet[m]);
      row(
        `client ${m.toUpperCase()} p99 at ${m === "get" ? GET_RATE : PUT_RATE}/s, with ${BUSY.join(" and ")} running (ms)`,
        busy[m].map((x) => x.toFixed(2)).join(" / "),
        quiet[m].map((x) => x.toFixed(2)).join(" / ") + " (neither running)",
        ratio.toFixed(2),
        "≤ 1.2",
        ratio <= 1.2,
      );
    }
    if (refilled.length > 0) {
      row(
        "(repair during those rounds) files copied to the replica per second",
        refilled.map((x) => x.toFixed(0)).join(" / "),
        `its limit: ${REPLICATOR_DEFAULTS.repairFilesPerSec}/s`,
        "",
        "",
        undefined,
      );
    }
    if (hog.cores.length > 0) {
      for (const m of ["get", "put"] as const) {
        row(
          `(baseline) client ${m.toUpperCase()} p99 beside a CPU hog as busy as repair (${hog.cores.map((c) => `${(c * 100).toFixed(0)}%`).join(" / ")} of a core)`,
          hog[m].map((x) => x.toFixed(2)).join(" / "),
          quiet[m].map((x) => x.toFixed(2)).join(" / ") + " (neither running)",
          (median(hog[m]) / median(quiet[m])).toFixed(2),
          "",
          undefined,
        );
      }
    }
  }
  if (PARTS.includes("scrub")) {
    const ratio = median(scrubbing.rps) / median(quiet.rps);
    row(
      "scrub rate at its default setting (8 MiB/s)",
      `${(scrubRate / 1024 ** 2).toFixed(1)} MiB/s`,
      "",
      "",
      "stated",
      undefined,
    );
    row(
      "GET 1-16 KiB req/s, 64 connections, with the scrub running",
      scrubbing.rps.map((x) => x.toFixed(0)).join(" / "),
      quiet.rps.map((x) => x.toFixed(0)).join(" / ") + " (scrub off)",
      ratio.toFixed(2),
      "≥ 0.9",
      ratio >= 0.9,
    );
  }
  await stopNode(node);
  await stopNode(replica);
}

async function main(): Promise<void> {
  console.log("# backpack repair benchmark");
  console.log(
    `machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${(totalmem() / 1024 ** 3).toFixed(1)} GiB RAM; Node ${process.version}`,
  );
  const root = await mkdtemp(join(tmpdir(), "backpack-repair-bench-"));
  try {
    if (PARTS.includes("refill")) await refill(root);
    if (PARTS.includes("compare")) await compare(root);
    if (PARTS.includes("impact") || PARTS.includes("scrub")) await impactAndScrub(root);
    console.log("\n| figure | value | baseline (same run) | ratio | target | |");
    console.log("|---|---|---|---|---|---|");
    for (const r of rows) console.log(r);
  } finally {
    for (const s of servers) await s.stop().catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
}

await main();
