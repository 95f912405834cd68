/**
 * Real ZooKeeper servers for tests, from Debian's `zookeeper` package: one JVM per server on free loopback
 * ports with a temp data dir, standalone or as an ensemble. Ready when the `srvr` four-letter word answers a
 * `Mode:` line (no sleeps). Stopped by PID with SIGKILL after the test, also when it fails.
 *
 *   const zk = await startZooKeeper(t);            // zk.connectString = "127.0.0.1:<port>"
 *   await zk.restart();                            // same port and data
 *   const ens = await startEnsemble(t, 3);         // ens.connectString = "127.0.0.1:a,127.0.0.1:b,127.0.0.1:c"
 *   const i = await ens.killLeader();              // clients move to the others once a new leader is elected
 *   await ens.start(i);                            // back as a follower
 *
 * `t` may be a test context or `{ after }` from `node:test` (one server shared by a whole file).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitFor } from "./wait.js";

const JARS = ["/usr/share/java/zookeeper.jar", "/usr/share/java/slf4j-simple.jar"];
/** tickTime 500 ms: sessions may be as short as 1 s and a dead leader is replaced in ~1-2 s. */
const TICK_MS = 500;

/** A test context, or `{ after }` from `node:test` for a server shared by a whole file. */
export type After = { after: (fn: () => Promise<void>) => void };

/** Answer of a four-letter word (`srvr`, `stat`, `ruok`), or "" when the server does not answer. */
export function fourLetterWord(port: number, word: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    let out = "";
    const socket = connect({ host: "127.0.0.1", port });
    const done = (): void => {
      socket.destroy();
      resolve(out);
    };
    socket.setTimeout(timeoutMs, done);
    socket.on("connect", () => socket.end(word));
    socket.on("data", (d: Buffer) => (out += d.toString("utf8")));
    socket.on("error", () => done());
    socket.on("close", () => resolve(out));
  });
}

/** The server's `Mode:` (`standalone`, `leader`, `follower`), or undefined while it does not serve. */
export async function serverMode(port: number): Promise<string | undefined> {
  const m = /^Mode: (\w+)/m.exec(await fourLetterWord(port, "srvr"));
  return m?.[1];
}

/** One ZooKeeper server process. */
export class ZooKeeperServer {
  proc: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  get connectString(): string {
    return `127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Spawns the JVM; resolves once it is running (see `waitServing` for readiness). */
  spawn(): void {
    if (this.running) return;
    for (const jar of JARS) {
      if (!existsSync(jar)) throw new Error(`${jar} is missing: install Debian's zookeeper package`);
    }
    const log = createWriteStream(join(this.dir, "zookeeper.log"), { flags: "a" });
    const proc = spawn(
      "java",
      [
        "-Xmx256m",
        // A short-lived test server: a quick JVM start matters more than peak speed.
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Xshare:auto",
        "-cp",
        JARS.join(":"),
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        join(this.dir, "zoo.cfg"),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    proc.stdout.pipe(log, { end: false });
    proc.stderr.pipe(log, { end: false });
    this.proc = proc;
    this.exited = new Promise((resolve) =>
      proc.once("exit", () => {
        log.end();
        resolve();
      }),
    );
  }

  /** Waits until this server serves clients (alone, or as a member of a quorum). */
  async waitServing(timeoutMs = 30_000): Promise<string> {
    return waitFor(
      async () => {
        if (!this.running) throw new Error(`zookeeper exited:\n${await this.logTail()}`);
        return serverMode(this.port);
      },
      { timeoutMs, intervalMs: 50, what: `zookeeper on port ${this.port} to serve` },
    );
  }

  async start(timeoutMs?: number): Promise<void> {
    this.spawn();
    await this.waitServing(timeoutMs);
  }

  /** SIGKILL, and wait for the process to be gone. */
  async kill(): Promise<void> {
    if (this.running) this.proc?.kill("SIGKILL");
    await this.exited;
  }

  /** SIGSTOP / SIGCONT: a frozen server (not dead, not answering). */
  freeze(): void {
    this.proc?.kill("SIGSTOP");
  }

  thaw(): void {
    this.proc?.kill("SIGCONT");
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  async logTail(chars = 3000): Promise<string> {
    const text = await readFile(join(this.dir, "zookeeper.log"), "utf8").catch(() => "");
    return text.slice(-chars);
  }
}

function zooCfg(dataDir: string, clientPort: number, peers: string[]): string {
  return [
    `tickTime=${TICK_MS}`,
    "initLimit=10",
    "syncLimit=2",
    `dataDir=${dataDir}`,
    `clientPort=${clientPort}`,
    "clientPortAddress=127.0.0.1",
    // Otherwise every server binds an admin port on 0.0.0.0:8080 and an ensemble collides with itself.
    "admin.enableServer=false",
    "4lw.commands.whitelist=*",
    "maxSessionTimeout=20000",
    ...peers,
    "",
  ].join("\n");
}

async function baseDir(t: After): Promise<{ dir: string; servers: ZooKeeperServer[] }> {
  const dir = await mkdtemp(join(tmpdir(), "backpack-zk-"));
  const servers: ZooKeeperServer[] = [];
  // One hook: kill first, then remove the data the servers were writing.
  t.after(async () => {
    await Promise.all(servers.map((s) => s.kill()));
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, servers };
}

export interface ZooKeeperHandle {
  /** `127.0.0.1:<port>` */
  connectString: string;
  port: number;
  server: ZooKeeperServer;
  /** SIGKILL (data kept; `start` brings it back on the same port). */
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
}

/** A standalone ZooKeeper server, killed after the test. */
export async function startZooKeeper(t: After): Promise<ZooKeeperHandle> {
  const { dir, servers } = await baseDir(t);
  const port = await freePort();
  const dataDir = join(dir, "data");
  await mkdir(dataDir, { recursive: true });
  await writeFile(join(dir, "zoo.cfg"), zooCfg(dataDir, port, []));
  const server = new ZooKeeperServer(dir, port);
  servers.push(server);
  await server.start();
  return {
    connectString: server.connectString,
    port,
    server,
    stop: () => server.kill(),
    start: () => server.start(),
    restart: () => server.restart(),
  };
}

export interface Ensemble {
  /** Every server: `127.0.0.1:a,127.0.0.1:b,127.0.0.1:c`. */
  connectString: string;
  servers: ZooKeeperServer[];
  /** Index of the current leader (waits until there is one). */
  leader(timeoutMs?: number): Promise<number>;
  kill(i: number): Promise<void>;
  start(i: number): Promise<void>;
  /** Kills the current leader (SIGKILL); resolves with its index once it is gone. */
  killLeader(): Promise<number>;
  /** Waits until every running server serves (a quorum with a leader). */
  waitServing(timeoutMs?: number): Promise<void>;
}

/** An ensemble of `n` servers (use an odd n), all serving when it resolves; killed after the test. */
export async function startEnsemble(t: After, n = 3): Promise<Ensemble> {
  const { dir, servers } = await baseDir(t);
  const ports: { client: number; peer: number; election: number }[] = [];
  for (let i = 0; i < n; i++)
    ports.push({ client: await freePort(), peer: await freePort(), election: await freePort() });
  const peers = ports.map((p, i) => `server.${i + 1}=127.0.0.1:${p.peer}:${p.election}`);
  for (let i = 0; i < n; i++) {
    const own = join(dir, `zk${i + 1}`);
    const dataDir = join(own, "data");
    await mkdir(dataDir, { recursive: true });
    await writeFile(join(dataDir, "myid"), `${i + 1}\n`);
    await writeFile(join(own, "zoo.cfg"), zooCfg(dataDir, ports[i]!.client, peers));
    servers.push(new ZooKeeperServer(own, ports[i]!.client));
  }
  for (const s of servers) s.spawn();
  const waitServing = async (timeoutMs = 60_000): Promise<void> => {
    await Promise.all(servers.filter((s) => s.running).map((s) => s.waitServing(timeoutMs)));
  };
  await waitServing();
  const leader = async (timeoutMs = 30_000): Promise<number> => {
    const oneBased = await waitFor(
      async () => {
        for (let i = 0; i < servers.length; i++) {
          if (servers[i]!.running && (await serverMode(servers[i]!.port)) === "leader") return i + 1;
        }
        return 0;
      },
      { timeoutMs, intervalMs: 50, what: "an ensemble leader" },
    );
    return oneBased - 1;
  };
  return {
    connectString: servers.map((s) => s.connectString).join(","),
    servers,
    leader,
    kill: (i) => servers[i]!.kill(),
    start: (i) => servers[i]!.start(),
    async killLeader(): Promise<number> {
      const i = await leader();
      await servers[i]!.kill();
      return i;
    },
    waitServing,
  };
}
