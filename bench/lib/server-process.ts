import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";

/** A server running in its own process (so the load tool, the server and the baseline never share a loop). */
export interface ServerProcess {
  url: string;
  pid: number;
  /** CPU seconds (user + system, all threads) the process has used so far; undefined where /proc is missing. */
  cpuSeconds(): number | undefined;
  stop(): Promise<void>;
}

let clockTicks: number | undefined;

/**
 * CPU time of a process from /proc (Linux). Throughput on a shared machine drifts with other load; CPU time per
 * request drifts much less, so the benchmarks report both.
 */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    clockTicks ??= Number(spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout.trim()) || 100;
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return undefined;
  }
}

/**
 * Node options for a benchmark's server process: with BENCH_PROFILE_DIR=<dir>, it writes a CPU profile there
 * when it stops (the file name carries its pid).
 */
export function profileNodeArgs(): string[] {
  const dir = process.env.BENCH_PROFILE_DIR;
  return dir ? ["--cpu-prof", "--cpu-prof-dir", dir] : [];
}

/**
 * Starts `node <script> <args>` and waits for its `{"msg":"listening","url":...}` JSON line on stderr (the
 * line every backpack service and the baseline server log).
 */
export async function startServerProcess(
  script: string,
  args: readonly string[],
  timeoutMs = 20_000,
): Promise<ServerProcess> {
  const proc: ChildProcess = spawn(process.execPath, [...profileNodeArgs(), script, ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} did not start:\n${stderr}`)), timeoutMs);
    proc.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      for (const line of stderr.split("\n")) {
        if (!line.includes('"listening"')) continue;
        try {
          const rec = JSON.parse(line) as { msg?: string; url?: string };
          if (rec.msg === "listening" && rec.url) {
            clearTimeout(timer);
            resolve(rec.url);
          }
        } catch {
          // A partial line: wait for more.
        }
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited ${code}:\n${stderr}`));
    });
  });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  return {
    url,
    pid: proc.pid ?? 0,
    cpuSeconds: () => processCpuSeconds(proc.pid ?? 0),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      await exited;
    },
  };
}
