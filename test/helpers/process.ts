import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { TestContext } from "node:test";
import { waitFor } from "./wait.js";

/** The compiled CLI entry points, for tests that run commands as an operator would. */
export const BIN_DIR = fileURLToPath(new URL("../../src/cli/bin/", import.meta.url));

export function binPath(name: string): string {
  return `${BIN_DIR}${name}.js`;
}

export interface ProcessOptions {
  /** A bin name (`backpack`, `backpack-coordinator`, ...) or an absolute path to a script or executable. */
  command: string;
  args: readonly string[];
  env?: Record<string, string>;
  cwd?: string;
  /**
   * When the process is ready: by default the first log line `{"msg":"listening","url":...}` on stderr
   * (every backpack service logs one). A RegExp is matched against stdout+stderr instead.
   */
  ready?: "listening" | RegExp | "none";
  readyTimeoutMs?: number;
  /**
   * Run in a process group of its own and signal the whole group (as Ctrl-C in a terminal does): for commands
   * that start children, such as `npm start`.
   */
  group?: boolean;
  /** Options for the Node.js runtime of a bin command (e.g. `--cpu-prof` to profile a benchmark's process). */
  nodeArgs?: readonly string[];
}

/**
 * A real child process a test can SIGKILL and restart. Killed (SIGKILL) after the test if still running.
 */
export class ChildHandle {
  proc: ChildProcess | undefined;
  stdout = "";
  stderr = "";
  url = "";
  private exited: Promise<number | null> = Promise.resolve(null);

  constructor(readonly options: ProcessOptions) {}

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(): Promise<this> {
    const { command, args, env, cwd } = this.options;
    const isBin = !command.includes("/");
    const file = isBin ? process.execPath : command;
    const argv = isBin ? [...(this.options.nodeArgs ?? []), binPath(command), ...args] : [...args];
    this.stdout = "";
    this.stderr = "";
    const proc = spawn(
      file.endsWith(".js") ? process.execPath : file,
      file.endsWith(".js") ? [file, ...argv] : argv,
      {
        cwd,
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"],
        detached: this.options.group === true,
      },
    );
    this.proc = proc;
    proc.stdout.setEncoding("utf8").on("data", (d: string) => (this.stdout += d));
    proc.stderr.setEncoding("utf8").on("data", (d: string) => (this.stderr += d));
    this.exited = new Promise((resolve) => proc.once("exit", (code) => resolve(code)));
    const ready = this.options.ready ?? "listening";
    if (ready === "none") return this;
    await waitFor(
      () => {
        if (!this.running) throw new Error(`process exited early:\n${this.stderr.slice(-2000)}`);
        if (ready === "listening") {
          const url = findListening(this.stderr);
          if (url) this.url = url;
          return url;
        }
        return ready.test(this.stdout + this.stderr);
      },
      { timeoutMs: this.options.readyTimeoutMs ?? 20_000, what: `${command} to be ready` },
    ).catch((err: unknown) => {
      this.signal("SIGKILL");
      throw err;
    });
    return this;
  }

  /** Sends a signal and waits for the exit; resolves with the exit code (null when killed by a signal). */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<number | null> {
    if (this.running) this.signal(signal);
    const code = await this.exited;
    // A group's other members (grandchildren) go too, also when the leader is already gone.
    if (this.options.group && signal === "SIGKILL") this.signal("SIGKILL");
    return code;
  }

  /** Freezes the process (SIGSTOP) as a stalled machine would; `resume()` lets it go on (SIGCONT). */
  pause(): void {
    this.signal("SIGSTOP");
  }

  resume(): void {
    this.signal("SIGCONT");
  }

  private signal(signal: NodeJS.Signals): void {
    const pid = this.proc?.pid;
    if (pid === undefined) return;
    try {
      if (this.options.group) process.kill(-pid, signal);
      else this.proc?.kill(signal);
    } catch {
      // Already gone.
    }
  }

  /** Resolves with the exit code once the process ends by itself. */
  async waitExit(): Promise<number | null> {
    return this.exited;
  }

  async restart(): Promise<this> {
    await this.kill("SIGKILL");
    return this.start();
  }
}

function findListening(stderr: string): string | undefined {
  for (const line of stderr.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const rec = JSON.parse(line) as { msg?: string; url?: string };
      if (rec.msg === "listening" && typeof rec.url === "string") return rec.url;
    } catch {
      // Not a log line.
    }
  }
  return undefined;
}

/** Starts a child process that is SIGKILLed after the test if still running. */
export async function startProcess(
  t: Pick<TestContext, "after">,
  options: ProcessOptions,
): Promise<ChildHandle> {
  const handle = new ChildHandle(options);
  t.after(() => handle.kill("SIGKILL"));
  return handle.start();
}

/** Runs a command to completion and returns its exit code and output. */
export async function runBin(
  command: string,
  args: readonly string[],
  options: { env?: Record<string, string>; cwd?: string; input?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [binPath(command), ...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  proc.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  proc.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  proc.stdin.end(options.input ?? "");
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeoutMs ?? 60_000);
  const code = await new Promise<number | null>((resolve) => proc.once("exit", (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Runs a shell command line (as a user would type it) to completion. */
export async function runShell(
  line: string,
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn("/bin/sh", ["-c", line], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  proc.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  proc.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => proc.kill("SIGKILL"), options.timeoutMs ?? 10 * 60_000);
  const code = await new Promise<number | null>((resolve) => proc.once("exit", (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

/** Whether a process runs (a zombie not yet reaped by whoever adopted it does not). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== "Z";
}

/** Every live process below `pid` (children, their children, ...), from /proc. */
export function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = procStat(Number(name));
    if (stat && stat.state !== "Z") parentOf.set(Number(name), stat.ppid);
  }
  const out: number[] = [];
  const below = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [child, parent] of parentOf) {
      if (below.has(parent) && !below.has(child)) {
        below.add(child);
        out.push(child);
        grew = true;
      }
    }
  }
  return out;
}

function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so parse from the last ")".
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const [state, ppid] = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: state ?? "", ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}
