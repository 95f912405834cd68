import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";

/**
 * An open-loop load at a fixed rate (what a client population does, unlike wrk, which sends as fast as the
 * server answers): requests start on schedule whether or not earlier ones are done, and each one's latency is
 * counted from when it was due (so a stall is not hidden by the requests it held back). Runs in a process of
 * its own: `pacedLoad(options)` spawns this file and reads its one JSON line. A warm-up second comes before the
 * `durationSec` measured.
 */
export interface PacedOptions {
  url: string;
  method: "GET" | "PUT";
  /** Requests per second. */
  rate: number;
  durationSec: number;
  /** Requests go to `<pathPrefix><n>`, n cycling through `[0, keys)`. */
  pathPrefix: string;
  keys: number;
  bodyBytes?: number;
}

export interface PacedResult {
  requests: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export async function pacedLoad(options: PacedOptions): Promise<PacedResult> {
  const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), JSON.stringify(options)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  proc.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve) => proc.once("exit", resolve));
  if (code !== 0) throw new Error(`paced load exited with ${code}`);
  return JSON.parse(out) as PacedResult;
}

/**
 * The first second is not counted: the pool opens its connections then, and a quiet server's p99 over 5 s was
 * that start (48-71 ms for a trivial server; 4-7 ms counted after it).
 */
const WARM_SEC = 1;

async function run(o: PacedOptions): Promise<PacedResult> {
  const pool = new Pool(o.url, { connections: 64, pipelining: 1 });
  const body = o.bodyBytes ? Buffer.alloc(o.bodyBytes, "p") : undefined;
  const latencies: number[] = [];
  let errors = 0;
  let issued = 0;
  const warm = Math.round(o.rate * WARM_SEC);
  const total = warm + Math.round(o.rate * o.durationSec);
  const start = performance.now();
  const pending = new Set<Promise<void>>();
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * o.rate));
      while (issued < due) {
        const n = issued++;
        const dueAt = start + (n / o.rate) * 1000;
        const counted = n >= warm;
        const p = pool
          .request({ path: `${o.pathPrefix}${n % o.keys}`, method: o.method, body })
          .then(async (res) => {
            await res.body.dump();
            if (res.statusCode >= 300) errors++;
          })
          .catch(() => void errors++)
          .finally(() => {
            if (counted) latencies.push(performance.now() - dueAt);
            pending.delete(p);
          });
        pending.add(p);
      }
      if (issued >= total) resolve();
      else setTimeout(tick, 2);
    };
    tick();
  });
  await Promise.all(pending);
  await pool.close();
  latencies.sort((a, b) => a - b);
  const at = (q: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    requests: latencies.length,
    errors,
    p50Ms: at(0.5),
    p99Ms: at(0.99),
    maxMs: latencies.at(-1) ?? 0,
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const result = await run(JSON.parse(process.argv[2] ?? "{}") as PacedOptions);
  process.stdout.write(JSON.stringify(result) + "\n");
}
