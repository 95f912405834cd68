import { spawn, type ChildProcess } from "node:child_process";
import { connect } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitFor } from "./wait.js";

/** A test context, or the module-level `after` of node:test (servers shared by a whole file). */
export interface AfterHook {
  after(fn: () => Promise<void>): void;
}

/**
 * A real `redis-server` (Debian's package) on a free loopback port with AOF on in a temp dir. `kill()` is a
 * SIGKILL; `restart()` starts it again on the same port and dir, so the AOF brings the data back. Stopped
 * after the test, also when it fails.
 */
export class RedisServer {
  proc: ChildProcess | undefined;
  output = "";
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  readonly host = "127.0.0.1";

  /** As the cluster map's queue settings list it. */
  get endpoint(): { host: string; port: number } {
    return { host: this.host, port: this.port };
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async start(): Promise<this> {
    const args = [
      "--port",
      String(this.port),
      "--bind",
      this.host,
      "--save",
      "",
      "--appendonly",
      "yes",
      "--dir",
      this.dir,
      "--daemonize",
      "no",
    ];
    const proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    this.proc = proc;
    this.output = "";
    proc.stdout.setEncoding("utf8").on("data", (d: string) => (this.output += d));
    proc.stderr.setEncoding("utf8").on("data", (d: string) => (this.output += d));
    this.exited = new Promise((resolve) => proc.once("exit", () => resolve()));
    await waitFor(
      async () => {
        if (!this.running) throw new Error(`redis-server exited:\n${this.output.slice(-2000)}`);
        return ping(this.host, this.port);
      },
      { timeoutMs: 15_000, what: `redis-server on port ${this.port}` },
    );
    return this;
  }

  /** SIGKILL: what a crash looks like (AOF written so far survives). */
  async kill(): Promise<void> {
    if (this.running) this.proc?.kill("SIGKILL");
    await this.exited;
  }

  /** SIGTERM: a clean shutdown. */
  async stop(): Promise<void> {
    if (this.running) this.proc?.kill("SIGTERM");
    await this.exited;
  }

  async restart(): Promise<this> {
    await this.kill();
    return this.start();
  }
}

/** Starts `count` Redis servers, each stopped after the test. */
export async function startRedisServers(t: AfterHook, count = 1): Promise<RedisServer[]> {
  const servers: RedisServer[] = [];
  for (let i = 0; i < count; i++) {
    const server = new RedisServer(await freePort(), await mkdtemp(join(tmpdir(), "backpack-redis-")));
    // Registered before start so that a server that fails half-way is still killed, then its dir removed.
    t.after(async () => {
      await server.kill();
      await rm(server.dir, { recursive: true, force: true });
    });
    servers.push(await server.start());
  }
  return servers;
}

export async function startRedis(t: AfterHook): Promise<RedisServer> {
  const [server] = await startRedisServers(t, 1);
  if (!server) throw new Error("no redis server started");
  return server;
}

/** True when the server answers PING with PONG. */
export function ping(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let answer = "";
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.on("error", () => done(false));
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.setEncoding("utf8").on("data", (d: string) => {
      answer += d;
      if (answer.includes("\r\n")) done(answer.startsWith("+PONG"));
    });
  });
}
