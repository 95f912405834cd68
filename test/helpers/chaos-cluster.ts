import { readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import type { TestContext } from "node:test";
import { Redis } from "ioredis";
import type { ShardReport } from "../../src/replicator/repair-report.js";
import { ProcCluster } from "../coordinator/proc-cluster.js";
import type { ClusterEvent } from "./acked-history.js";
import type { ChildHandle } from "./process.js";
import { startRedisServers, type RedisServer } from "./redis.js";
import { nodeDigest, waitCompared } from "./replica-state.js";
import { flipKeyByte, flipStoredByte, type FlippedByte } from "./volume-damage.js";
import { freePort, waitFor } from "./wait.js";
import { startZooKeeper, type ZooKeeperHandle } from "./zookeeper.js";

/**
 * A distributed cluster of real processes for fault tests: ZooKeeper, two Redis servers (AOF on), 4 storage
 * nodes in 2 shards of 2, 2 coordinators and 1 replicator, configured with the admin commands, on free
 * loopback ports with temp data dirs. Any one node, coordinator, replicator or Redis server can be SIGKILLed
 * (checked: the process exited by SIGKILL) and restarted where it was (same port, same data). A killed node's
 * disk can be damaged before its restart: its data dir removed, or a byte of a stored body flipped. Everything
 * is stopped after the test (or by the caller's `after` hooks), also on failure.
 */

export type Role = "node" | "coordinator" | "replicator" | "redis";
export const ROLES: readonly Role[] = ["node", "coordinator", "replicator", "redis"];

export interface Member {
  role: Role;
  /** 1-based: server id for a node, index for the others. */
  id: string;
}

export function memberName(m: Member): string {
  return `${m.role} ${m.id}`;
}

export const SHARDS: Readonly<Record<string, readonly string[]>> = { "1": ["1", "2"], "2": ["3", "4"] };
const ROOT = "/chaos";
const QUEUE_KEY = "chaos-queue";
/** Short leases: a task leased by a replicator that is killed is taken over 10 s later, not 60 s. */
const LEASE = "10s";

export interface ChaosClusterOptions {
  /** More arguments for the replicator, e.g. `--repair-every 2s` for repair to converge within a test. */
  replicatorArgs?: readonly string[];
  /** More arguments for every node and coordinator (e.g. `--no-ring`). */
  nodeArgs?: readonly string[];
  coordinatorArgs?: readonly string[];
}

export interface DrainResult {
  ms: number;
  deadLetters: number;
}

export class ChaosCluster {
  readonly events: ClusterEvent[] = [];
  readonly kills: Record<Role, number> = { node: 0, coordinator: 0, replicator: 0, redis: 0 };
  /** Members this harness killed and did not restart yet. */
  private readonly down = new Set<string>();
  /** Members that exited without being killed (reported once each). */
  private readonly crashes: string[] = [];

  private constructor(
    readonly procs: ProcCluster,
    readonly zk: ZooKeeperHandle,
    readonly redis: RedisServer[],
    readonly coordinators: ChildHandle[],
    readonly replicator: ChildHandle,
    private readonly clock: () => number,
  ) {}

  /** Starts and configures the whole cluster; every process is killed by `t`'s after hooks. */
  static async start(
    t: Pick<TestContext, "after">,
    clock: () => number,
    options: ChaosClusterOptions = {},
  ): Promise<ChaosCluster> {
    const [zk, redis] = await Promise.all([startZooKeeper(t), startRedisServers(t, 2)]);
    const procs = await ProcCluster.create(t, zk.connectString, ROOT);
    await Promise.all(
      Object.values(SHARDS)
        .flat()
        .map((id) => procs.startNode(id, [...(options.nodeArgs ?? [])])),
    );
    await procs.admin(
      "backpack-coordinator-init",
      QUEUE_KEY,
      redis.map((r) => `${r.host}:${r.port}`).join(","),
    );
    for (const [id, url] of procs.nodeUrls) await procs.admin("backpack-coordinator-add-server", id, url);
    for (const [shard, servers] of Object.entries(SHARDS)) {
      await procs.admin("backpack-coordinator-add-shard", shard, servers.join(","), "100gb");
      await procs.admin("backpack-coordinator-enable-shard", shard);
    }
    // Coordinators on fixed ports, as clients know them: a restarted coordinator comes back at the same URL.
    const coordinators = await Promise.all(
      [0, 1].map(async () =>
        procs.track({
          command: "backpack-coordinator",
          args: [
            zk.connectString,
            ROOT,
            "127.0.0.1",
            String(await freePort()),
            "--usage-flush",
            "200ms",
            ...(options.coordinatorArgs ?? []),
          ],
        }),
      ),
    );
    const replicator = await procs.track({
      command: "backpack-replicator",
      args: [
        zk.connectString,
        ROOT,
        "16",
        "--listen",
        "127.0.0.1:0",
        "--lease",
        LEASE,
        ...(options.replicatorArgs ?? []),
      ],
    });
    const cluster = new ChaosCluster(procs, zk, redis, coordinators, replicator, clock);
    await waitFor(
      async () => {
        for (const c of coordinators) {
          const stats = (await (await fetch(`${c.url}/stats`)).json()) as { writable_shards: number };
          if (stats.writable_shards !== Object.keys(SHARDS).length) return false;
        }
        return true;
      },
      { timeoutMs: 30_000, what: "both coordinators to see every shard writable" },
    );
    return cluster;
  }

  /** Every process that can be killed. */
  members(): Member[] {
    return [
      ...Object.values(SHARDS)
        .flat()
        .sort()
        .map((id) => ({ role: "node" as const, id })),
      ...this.coordinators.map((_, i) => ({ role: "coordinator" as const, id: String(i + 1) })),
      { role: "replicator", id: "1" },
      ...this.redis.map((_, i) => ({ role: "redis" as const, id: String(i + 1) })),
    ];
  }

  nodeUrl(server: string): string {
    const url = this.procs.nodeUrls.get(server);
    if (url === undefined) throw new Error(`no node ${server}`);
    return url;
  }

  /** The coordinator's URL (1-based); the same before and after a restart. */
  coordinatorUrl(i: number): string {
    const { args } = this.coordinators[i - 1]!.options;
    return `http://127.0.0.1:${args[3]}`;
  }

  isRunning(m: Member): boolean {
    return m.role === "redis" ? this.redisOf(m).running : this.handleOf(m).running;
  }

  /**
   * SIGKILLs a member and waits for its exit; throws unless the process was running and exited by SIGKILL.
   */
  async kill(m: Member): Promise<void> {
    const name = memberName(m);
    if (!this.isRunning(m)) throw new Error(`${name} was not running when it was to be killed`);
    let pid: number | undefined;
    let signal: NodeJS.Signals | null | undefined;
    let code: number | null | undefined;
    if (m.role === "redis") {
      const r = this.redisOf(m);
      pid = r.proc?.pid;
      await r.kill();
      signal = r.proc?.signalCode;
      code = r.proc?.exitCode;
    } else {
      const h = this.handleOf(m);
      pid = h.pid;
      await h.kill("SIGKILL");
      signal = h.proc?.signalCode;
      code = h.proc?.exitCode;
    }
    if (signal !== "SIGKILL") {
      throw new Error(`${name} (pid ${pid}) did not die of SIGKILL: exit code ${code}, signal ${signal}`);
    }
    this.down.add(name);
    this.kills[m.role]++;
    this.events.push({ atMs: this.clock(), what: `SIGKILL ${name} (pid ${pid}): exited by ${signal}` });
  }

  /**
   * Freezes a node (SIGSTOP), as a GC pause, a hung disk or a stalled VM would; throws unless the kernel shows
   * it stopped. `thaw` lets it go on (SIGCONT).
   */
  async freeze(server: string): Promise<void> {
    const h = this.handleOf({ role: "node", id: server });
    h.pause();
    await waitFor(() => processState(h.pid) === "T", { what: `node ${server} (pid ${h.pid}) to be stopped` });
    this.events.push({ atMs: this.clock(), what: `SIGSTOP node ${server} (pid ${h.pid}): stopped` });
  }

  thaw(server: string): void {
    this.handleOf({ role: "node", id: server }).resume();
    this.events.push({ atMs: this.clock(), what: `SIGCONT node ${server}` });
  }

  /** Starts a member again where it was (same port, same data); resolves once it serves. */
  async restart(m: Member): Promise<void> {
    const started = this.clock();
    const stopped = (): Error => new Error(`${memberName(m)} not restarted: the cluster is being stopped`);
    if (this.procs.stopped) throw stopped();
    if (m.role === "redis") await this.redisOf(m).start();
    else await this.handleOf(m).start();
    // Stopped while it started (a run interrupted mid-restart): the cleanup has passed it by, so kill it here.
    if (this.procs.stopped) {
      await (m.role === "redis" ? this.redisOf(m).kill() : this.handleOf(m).kill("SIGKILL"));
      throw stopped();
    }
    this.down.delete(memberName(m));
    const pid = m.role === "redis" ? this.redisOf(m).proc?.pid : this.handleOf(m).pid;
    this.events.push({
      atMs: this.clock(),
      what: `${memberName(m)} running again (pid ${pid}, start took ${Math.round(this.clock() - started)} ms)`,
    });
  }

  /** A node's data dir (volumes, index checkpoint, ...). */
  nodeDir(server: string): string {
    const dir = this.handleOf({ role: "node", id: server }).options.args[0];
    if (dir === undefined) throw new Error(`no data dir for node ${server}`);
    return dir;
  }

  /** "The disk was replaced": removes a killed node's data dir; `restart` then starts it empty. */
  async removeData(server: string): Promise<void> {
    this.assertDown(server);
    await rm(this.nodeDir(server), { recursive: true, force: true });
    this.events.push({ atMs: this.clock(), what: `node ${server}: data dir removed (rm -rf)` });
  }

  /** Bit rot: flips a byte in the middle of a stored body of a killed node (see `flipStoredByte`). */
  async flipByte(server: string, random: () => number): Promise<FlippedByte | undefined> {
    this.assertDown(server);
    const flipped = await flipStoredByte(this.nodeDir(server), random);
    this.events.push({
      atMs: this.clock(),
      what: flipped
        ? `node ${server}: flipped the byte at ${flipped.offset} of ${flipped.file} (body of ${flipped.key} ` +
          `version ${flipped.version}, ${flipped.size} bytes)`
        : `node ${server}: no stored body to flip a byte of`,
    });
    return flipped;
  }

  /** Damages the key of `key`'s current record on a killed node (see `flipKeyByte`). */
  async flipKeyByte(server: string, key: string): Promise<FlippedByte | undefined> {
    this.assertDown(server);
    const flipped = await flipKeyByte(this.nodeDir(server), key);
    this.events.push({
      atMs: this.clock(),
      what: `node ${server}: flipped the byte at ${flipped?.offset ?? "-"} in the key of ${key}'s record`,
    });
    return flipped;
  }

  /** Waits until every node of `shard` has the same replica digest (same files, versions, tombstones). */
  async waitInSync(shard: string, timeoutMs: number): Promise<void> {
    const servers = SHARDS[shard] ?? [];
    let last = "";
    await waitFor(
      async () => {
        const digests = await Promise.all(servers.map((s) => nodeDigest(this.nodeUrl(s))));
        last = digests.map((d, i) => `node ${servers[i]}: ${d.entries} entries`).join(", ");
        return digests.every((d) => d.digest === digests[0]!.digest);
      },
      { timeoutMs, intervalMs: 200, what: `the nodes of shard ${shard} to hold the same` },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; last seen: ${last}`);
    });
  }

  /**
   * The replicator's first comparison of every shard begun at or after `sinceMs` (epoch ms), or with `untilClean`
   * the first that found nothing to repair (see `waitCompared`).
   */
  waitCompared(
    sinceMs: number,
    options: { timeoutMs: number; untilClean?: boolean },
  ): Promise<ShardReport[]> {
    return waitCompared(() => this.replicator.url, SHARDS, sinceMs, options);
  }

  /**
   * Members that exited without being killed, with the tail of their output; each is restarted (so a run
   * goes on) and reported once.
   */
  async restartCrashed(): Promise<string[]> {
    const found: string[] = [];
    for (const m of this.members()) {
      const name = memberName(m);
      if (this.down.has(name) || this.isRunning(m)) continue;
      const out = m.role === "redis" ? this.redisOf(m).output : this.handleOf(m).stderr;
      const proc = m.role === "redis" ? this.redisOf(m).proc : this.handleOf(m).proc;
      const what = `${name} exited by itself (code ${proc?.exitCode}, signal ${proc?.signalCode}): ${out.slice(-1500)}`;
      found.push(what);
      this.crashes.push(what);
      this.events.push({ atMs: this.clock(), what: `${name} exited by itself` });
      await this.restart(m);
    }
    return found;
  }

  /** Every crash seen by `restartCrashed`. */
  get crashed(): readonly string[] {
    return this.crashes;
  }

  /** Restarts every member this harness killed and has not restarted. */
  async restartAllDown(): Promise<void> {
    for (const m of this.members()) if (this.down.has(memberName(m))) await this.restart(m);
  }

  /** Tasks and dead letters on each Redis server (undefined for a server that does not answer). */
  async queueCounts(): Promise<({ tasks: number; dead: number } | undefined)[]> {
    return Promise.all(
      this.redis.map(async (r) => {
        const client = new Redis({
          host: r.host,
          port: r.port,
          lazyConnect: true,
          connectTimeout: 1000,
          commandTimeout: 2000,
          maxRetriesPerRequest: 0,
          retryStrategy: () => null,
        });
        client.on("error", () => undefined);
        try {
          await client.connect();
          const [tasks, dead] = await Promise.all([
            client.hlen(`${QUEUE_KEY}:tasks`),
            client.hlen(`${QUEUE_KEY}:dead`),
          ]);
          return { tasks, dead };
        } catch {
          return undefined;
        } finally {
          client.disconnect();
        }
      }),
    );
  }

  /** FLUSHALL on every Redis server: the whole replication queue lost (tasks, leases, dead letters). */
  async flushQueue(): Promise<void> {
    for (const r of this.redis) {
      const client = new Redis({ host: r.host, port: r.port, lazyConnect: true, maxRetriesPerRequest: 0 });
      try {
        await client.connect();
        await client.flushall();
      } finally {
        client.disconnect();
      }
    }
    this.events.push({ atMs: this.clock(), what: "FLUSHALL on every Redis server" });
  }

  /**
   * Waits until the replication queue is empty on both Redis servers (every task done or dead-lettered) and
   * both coordinators report a queue length of 0. Throws after `timeoutMs` with what is still queued.
   */
  async waitDrained(timeoutMs: number): Promise<DrainResult> {
    const started = this.clock();
    let last = "";
    let deadLetters = 0;
    await waitFor(
      async () => {
        const counts = await this.queueCounts();
        last = counts.map((c, i) => `redis ${i + 1}: ${c ? `${c.tasks} tasks` : "no answer"}`).join(", ");
        if (counts.some((c) => c === undefined || c.tasks > 0)) return false;
        deadLetters = Math.max(...counts.map((c) => c?.dead ?? 0));
        for (const [i, c] of this.coordinators.entries()) {
          const stats = (await (await fetch(`${c.url}/stats`)).json()) as { queue_length: number | null };
          last += `, coordinator ${i + 1}: queue_length ${stats.queue_length}`;
          if (stats.queue_length !== 0) return false;
        }
        return true;
      },
      { timeoutMs, intervalMs: 250, what: "the replication queue to drain" },
    ).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}; last seen: ${last}`);
    });
    return { ms: this.clock() - started, deadLetters };
  }

  private assertDown(server: string): void {
    if (this.isRunning({ role: "node", id: server }))
      throw new Error(`node ${server} is running: kill it first`);
  }

  private handleOf(m: Member): ChildHandle {
    const i = Number(m.id) - 1;
    const h =
      m.role === "node"
        ? this.procs.nodes.get(m.id)
        : m.role === "coordinator"
          ? this.coordinators[i]
          : this.replicator;
    if (h === undefined) throw new Error(`no ${memberName(m)}`);
    return h;
  }

  private redisOf(m: Member): RedisServer {
    const r = this.redis[Number(m.id) - 1];
    if (r === undefined) throw new Error(`no ${memberName(m)}`);
    return r;
  }
}

/** The state letter of a process in /proc (`T` stopped, `S` sleeping, `R` running), or undefined. */
function processState(pid: number | undefined): string | undefined {
  if (pid === undefined) return undefined;
  try {
    // /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces, so read after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}
