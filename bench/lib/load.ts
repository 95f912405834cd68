import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** One load run against an HTTP server. */
export interface LoadOptions {
  /** Base URL of the server, e.g. `http://127.0.0.1:8080`. */
  url: string;
  method: "GET" | "PUT";
  connections: number;
  durationSec: number;
  /** Requests go to `<pathPrefix><n>` with n cycling through `[0, keys)` (distinct keys per thread). */
  pathPrefix: string;
  keys: number;
  /** Body size for PUT, bytes. */
  bodyBytes?: number;
  headers?: Record<string, string>;
  /** wrk threads (default 2: these machines have 2 cores and the server needs them too). */
  threads?: number;
}

export interface LoadResult {
  tool: "wrk" | "autocannon";
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Socket errors plus answers that were not 2xx/3xx; a valid run has 0. */
  errors: number;
}

export function hasWrk(): boolean {
  return spawnSync("wrk", ["--version"], { stdio: "ignore" }).error === undefined;
}

function hasAutocannon(): boolean {
  return spawnSync("autocannon", ["--version"], { stdio: "ignore" }).error === undefined;
}

/**
 * Runs wrk (preferred: autocannon saturates near the baseline's own rate on these machines) or, where wrk is
 * missing, autocannon from PATH.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  if (hasWrk()) return runWrk(options);
  if (hasAutocannon()) return runAutocannon(options);
  throw new Error("neither wrk nor autocannon is installed: apt-get install wrk");
}

/** A wrk Lua script: one path per request from a key range, a fixed body, and a JSON summary at the end. */
export function wrkScript(o: LoadOptions): string {
  const headers = Object.entries(o.headers ?? {})
    .map(([k, v]) => `headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
    .join("\n");
  return `
local method = ${JSON.stringify(o.method)}
local prefix = ${JSON.stringify(o.pathPrefix)}
local keys = ${o.keys}
local size = ${o.bodyBytes ?? 0}
local threads = {}
local body = nil
local counter = 0
headers = {}
${headers}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  if size > 0 then body = string.rep("b", size) end
  counter = 0
end

function request()
  counter = counter + 1
  local n = (id * 104729 + counter) % keys
  return wrk.format(method, prefix .. n, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
`;
}

async function runWrk(o: LoadOptions): Promise<LoadResult> {
  const dir = await mkdtemp(join(tmpdir(), "backpack-wrk-"));
  try {
    const script = join(dir, "load.lua");
    await writeFile(script, wrkScript(o));
    const args = [
      `-t${o.threads ?? 2}`,
      `-c${o.connections}`,
      `-d${o.durationSec}s`,
      "--timeout",
      "10s",
      "-s",
      script,
      o.url,
    ];
    const out = await capture("wrk", args);
    const line = out.split("\n").find((l) => l.startsWith("WRK_JSON "));
    if (!line) throw new Error(`wrk printed no summary:\n${out}`);
    const r = JSON.parse(line.slice("WRK_JSON ".length)) as {
      requests: number;
      duration_us: number;
      p50_us: number;
      p99_us: number;
      errors: number;
    };
    return {
      tool: "wrk",
      requests: r.requests,
      rps: r.requests / (r.duration_us / 1e6),
      p50Ms: r.p50_us / 1000,
      p99Ms: r.p99_us / 1000,
      errors: r.errors,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function runAutocannon(o: LoadOptions): Promise<LoadResult> {
  const dir = await mkdtemp(join(tmpdir(), "backpack-ac-"));
  try {
    const args = ["--json", "-c", String(o.connections), "-d", String(o.durationSec), "-m", o.method];
    for (const [k, v] of Object.entries(o.headers ?? {})) args.push("-H", `${k}=${v}`);
    if (o.bodyBytes) {
      const bodyFile = join(dir, "body");
      await writeFile(bodyFile, Buffer.alloc(o.bodyBytes, "b"));
      args.push("-i", bodyFile);
    }
    // autocannon sends one path; the key range is not varied.
    args.push(`${o.url}${o.pathPrefix}0`);
    const r = JSON.parse(await capture("autocannon", args)) as {
      requests: { total: number; average: number };
      latency: { p50: number; p99: number };
      errors: number;
      non2xx: number;
    };
    return {
      tool: "autocannon",
      requests: r.requests.total,
      rps: r.requests.average,
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      errors: r.errors + r.non2xx,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function capture(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    p.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    p.on("error", reject);
    p.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err}`))));
  });
}
