import { cpus, tmpdir, totalmem } from "node:os";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fillKeys } from "./lib/fill.js";
import { hasWrk, runLoad, type LoadResult } from "./lib/load.js";
import { startServerProcess, type ServerProcess } from "./lib/server-process.js";

/**
 * `npm run bench:node`: a storage node against a trivial node:http baseline, same machine, same run, same load
 * tool, PUT and GET of 1 KiB (64 connections) and 1 MiB (8 connections). Each server runs in its own process.
 * Options (env): BENCH_SECONDS per run (default 2), BENCH_ROUNDS (default 7), BENCH_SYNC (batch|none, default
 * batch), BENCH_SIZES (1kib,1mib), BENCH_AGAINST (the path of another build's `dist/src/cli/bin/backpack.js`:
 * that build's storage node is the baseline instead of the trivial server, to measure a change side by side).
 */
const SECONDS = Number(process.env.BENCH_SECONDS ?? 2);
const SYNC = process.env.BENCH_SYNC ?? "batch";
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 7));
const BACKPACK = fileURLToPath(new URL("../src/cli/bin/backpack.js", import.meta.url));
const BASELINE = fileURLToPath(new URL("./lib/baseline-server.js", import.meta.url));
const AGAINST = process.env.BENCH_AGAINST;

interface Case {
  name: string;
  bytes: number;
  connections: number;
  keys: number;
  target: { get: number; put: number };
}

/** BENCH_SIZES=1kib (or 1mib): run only those cases. */
const SIZES = process.env.BENCH_SIZES?.toLowerCase().split(",");
const CASES: Case[] = [
  { name: "1 KiB", bytes: 1024, connections: 64, keys: 2_000, target: { get: 0.8, put: 0.6 } },
  { name: "1 MiB", bytes: 1024 * 1024, connections: 8, keys: 64, target: { get: 0.8, put: 0.8 } },
].filter((c) => !SIZES || SIZES.includes(c.name.replace(" ", "").toLowerCase()));

/** The round whose ratio is the median (an odd number of rounds gives a real round, not an average). */
function median<T>(rounds: T[], ratio: (r: T) => number): T {
  const sorted = [...rounds].sort((a, b) => ratio(a) - ratio(b));
  return sorted[Math.floor((sorted.length - 1) / 2)] as T;
}

/** A run's load-tool result with the server's CPU time per request. */
type Measured = LoadResult & { cpuUs?: number };

function cpuText(r: { cpuUs?: number }): string {
  return r.cpuUs === undefined ? "n/a" : r.cpuUs.toFixed(0);
}

function fmt(r: Measured): string {
  return `${r.rps.toFixed(0).padStart(8)} req/s  p99 ${r.p99Ms.toFixed(2).padStart(7)} ms  CPU ${cpuText(r).padStart(5)} µs/req${r.errors ? `  (${r.errors} errors!)` : ""}`;
}

async function main(): Promise<void> {
  const cpu = cpus()[0]?.model ?? "unknown cpu";
  console.log("# backpack storage node benchmark");
  console.log(
    `machine: ${cpus().length} × ${cpu}, ${(totalmem() / 1024 ** 3).toFixed(1)} GiB RAM; Node ${process.version}`,
  );
  console.log(
    `load tool: ${hasWrk() ? "wrk (2 threads, Lua script: a distinct key per request from a key range)" : "autocannon"}`,
  );
  console.log(
    AGAINST
      ? `method: node (sync=${SYNC}, data in ${tmpdir()}) vs the storage node of another build (${AGAINST}),`
      : `method: node (sync=${SYNC}, data in ${tmpdir()}) vs baseline node:http (discards PUT bodies, answers GET`,
  );
  console.log(
    `${AGAINST ? "same options" : "from a buffer in memory"}, each in its own process; after a 2 s warm-up of each, ${ROUNDS} rounds of ${SECONDS} s`,
  );
  console.log("per server, alternating which goes first; the round with the median ratio is reported.");
  console.log(
    "Before GET, every key of the range is stored once. Ratio = node / baseline req/s. CPU = user+system",
  );
  console.log(
    "time of the server process (all threads) per request, which drifts less than req/s on a busy machine.\n",
  );

  const dataDir = await mkdtemp(join(tmpdir(), "backpack-bench-"));
  const againstDir = await mkdtemp(join(tmpdir(), "backpack-bench-"));
  const servers: ServerProcess[] = [];
  const rows: string[] = [];
  let allMet = true;
  try {
    const node = await startServerProcess(BACKPACK, ["node", dataDir, "127.0.0.1", "0", "--sync", SYNC]);
    servers.push(node);
    // Another build's node lives as long as ours, through the same cases: the same data and heap behind each
    // case (a fresh process for the 1 MiB case had a smaller heap to collect than ours, which had done the 1 KiB
    // ones, and looked about 30% cheaper per 1 MiB PUT for that alone).
    const other = AGAINST
      ? await startServerProcess(AGAINST, ["node", againstDir, "127.0.0.1", "0", "--sync", SYNC])
      : undefined;
    if (other) servers.push(other);
    for (const c of CASES) {
      const baseline = other ?? (await startServerProcess(BASELINE, [String(c.bytes)]));
      if (!other) servers.push(baseline);
      for (const method of ["PUT", "GET"] as const) {
        const load = (url: string, durationSec: number): Promise<LoadResult> =>
          runLoad({
            url,
            method,
            connections: c.connections,
            durationSec,
            pathPrefix: `/bench/${c.bytes}/`,
            keys: c.keys,
            bodyBytes: method === "PUT" ? c.bytes : undefined,
          });
        if (method === "GET") {
          await fillKeys(node.url, `/bench/${c.bytes}/`, c.keys, c.bytes);
          if (AGAINST) await fillKeys(baseline.url, `/bench/${c.bytes}/`, c.keys, c.bytes);
        }
        const measured = async (server: ServerProcess): Promise<Measured> => {
          const before = server.cpuSeconds();
          const r = await load(server.url, SECONDS);
          const after = server.cpuSeconds();
          return before === undefined || after === undefined
            ? r
            : { ...r, cpuUs: ((after - before) * 1e6) / Math.max(1, r.requests) };
        };
        await load(baseline.url, 2);
        await load(node.url, 2);
        // Rounds alternate which server goes first, so a slow stretch of the machine hits both sides alike.
        const rounds: { base: Measured; ours: Measured }[] = [];
        for (let i = 0; i < ROUNDS; i++) {
          if (i % 2 === 0) {
            const base = await measured(baseline);
            rounds.push({ base, ours: await measured(node) });
          } else {
            const ours = await measured(node);
            rounds.push({ base: await measured(baseline), ours });
          }
        }
        const { base, ours } = median(rounds, (r) => r.ours.rps / r.base.rps);
        const ratio = ours.rps / base.rps;
        const cpuRatio = base.cpuUs && ours.cpuUs ? base.cpuUs / ours.cpuUs : undefined;
        // Against another build the question is what a change costs: at most 5%.
        const target = AGAINST ? 0.95 : method === "GET" ? c.target.get : c.target.put;
        const errors = rounds.reduce((n, r) => n + r.ours.errors, 0);
        const met = ratio >= target && errors === 0;
        allMet &&= met;
        const label = `${method} ${c.name}, ${c.connections} conn`;
        console.log(
          `${label}\n  baseline ${fmt(base)}\n  node     ${fmt(ours)}\n` +
            `  ratios   ${rounds.map((r) => (r.ours.rps / r.base.rps).toFixed(2)).join(" ")}; median round above\n` +
            `  ratio    ${ratio.toFixed(2)} (target ≥ ${target}) ${met ? "met" : "NOT met"}` +
            (cpuRatio ? `; server CPU per request, baseline/node: ${cpuRatio.toFixed(2)}` : ""),
        );
        rows.push(
          `| ${label} | ${base.rps.toFixed(0)} | ${base.p99Ms.toFixed(2)} | ${ours.rps.toFixed(0)} | ${ours.p99Ms.toFixed(2)} | ${ratio.toFixed(2)} | ≥ ${target} | ${cpuText(base)} | ${cpuText(ours)} |`,
        );
      }
      if (!other) await baseline.stop();
    }
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    await rm(dataDir, { recursive: true, force: true });
    await rm(againstDir, { recursive: true, force: true });
  }
  console.log(
    "\n| run | baseline req/s | baseline p99 ms | node req/s | node p99 ms | ratio | target | baseline CPU µs/req | node CPU µs/req |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) console.log(r);
  console.log(allMet ? "\nall targets met" : "\nsome targets not met");
}

await main();
