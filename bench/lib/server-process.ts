import { spawn, type ChildProcess } from "node:child_process";

/** A server running in its own process (so the load tool, the server and the baseline never share a loop). */
export interface ServerProcess {
  url: string;
  pid: number;
  stop(): Promise<void>;
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
  const proc: ChildProcess = spawn(process.execPath, [script, ...args], {
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
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      await exited;
    },
  };
}
