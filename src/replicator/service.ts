import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { Agent } from "undici";
import { createAgent, OriginSockets } from "../client/http-agent.js";
import { NodeClient } from "../client/node-client.js";
import { LeanClient } from "../client/lean-client.js";
import { followSettings, LiveSettings } from "../cluster/settings.js";
import type { ClusterMap } from "../cluster/types.js";
import { BackpackError } from "../common/errors.js";
import { closeServer, listen, sendError, sendJson } from "../common/http.js";
import { silentLogger, type Logger } from "../common/logger.js";
import { createRegistry, sendMetrics } from "../common/metrics.js";
import type { Service } from "../common/service.js";
import { parseHealth } from "../queue/health.js";
import type { ReplicationQueue } from "../queue/types.js";
import { ServiceRing } from "../ring/service-ring.js";
import { authority } from "../ring/url-watch.js";
import type { ReplicatorConfig } from "./config.js";
import { AntiEntropy } from "./anti-entropy.js";
import { Copier } from "./copier.js";
import { ReplicatorStats, type ReplicatorStatsJson } from "./replicator-stats.js";
import { WorkerPool } from "./worker-pool.js";

export interface ReplicatorDeps {
  map: ClusterMap;
  queue: ReplicationQueue;
  log?: Logger;
  now?: () => number;
  random?: () => number;
  /** Process-wide metrics (event loop, memory) on /metrics: on in a process of its own. */
  processMetrics?: boolean;
}

/** How long a waiting lease call blocks when the queue is empty. */
const LEASE_WAIT_MS = 1000;
/** A comparison reported under way this recently (3 reports) is still running somewhere. */
const BUSY_REPORT_MS = 6000;
/** A target that stopped answering is asked this often whether it is back, each time for this long at most. */
const PROBE_EVERY_MS = 1000;
const PROBE_TIMEOUT_MS = 2000;
/** Time given to in-flight copies at stop before they are aborted (their leases bring them back). */
const STOP_GRACE_MS = 10_000;

/**
 * A replicator: leases tasks from the replication queue and carries them out against the storage nodes
 * (`Copier`), with bounded concurrency overall and per target (`WorkerPool`). It reads the cluster map at
 * each task, so new servers and shards are used without a restart. The map and queue are injected and
 * stay owned by the caller (started before, stopped after).
 */
export class ReplicatorService implements Service {
  readonly stats: ReplicatorStats;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly agent: Agent;
  /** Copies read their source and write their target through this lean client; deletes go through the agent. */
  private readonly lean = new LeanClient();
  private readonly pool: WorkerPool;
  /** Anti-entropy: compares every shard's replicas and repairs them (started with the service). */
  readonly repair: AntiEntropy;
  private readonly registry;
  private readonly server: Server;
  private baseUrl: string | undefined;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  /** The replicator's ring membership: targets it holds suspect or dead wait (see `WorkerPool.setTargetHeld`). */
  readonly ring: ServiceRing;
  private readonly sockets = new OriginSockets();
  private unwatch: (() => void) | undefined;
  private unfollow: (() => void) | undefined;
  /** The cluster's runtime settings as this replicator applied them (the log level). */
  readonly settings: LiveSettings;

  constructor(
    readonly config: Readonly<ReplicatorConfig>,
    private readonly deps: ReplicatorDeps,
  ) {
    this.log = deps.log ?? silentLogger;
    this.now = deps.now ?? Date.now;
    this.registry = createRegistry({ service: "replicator" }, deps.processMetrics ?? false);
    this.stats = new ReplicatorStats(this.registry, deps.queue, this.now);
    this.agent = createAgent({
      connections: Math.max(4, config.perTargetConcurrency * 2),
      sockets: this.sockets,
    });
    this.ring = new ServiceRing(config.ring, "replicator", this.log);
    this.settings = new LiveSettings(this.log);
    // Small copies to one node in one turn go in one request, stored by one group commit.
    const nodes = new NodeClient(this.agent, { batch: true }, this.lean);
    const copier = new Copier(nodes, { token: config.nodeToken, timeoutMs: config.requestTimeoutMs });
    this.repair = new AntiEntropy(
      deps.map,
      nodes,
      copier,
      this.log,
      {
        intervalMs: config.repairIntervalMs,
        filesPerSec: config.repairFilesPerSec,
        bytesPerSec: config.repairBytesPerSec,
        token: config.nodeToken,
        timeoutMs: config.requestTimeoutMs,
        publish: (health, add) => deps.queue.putHealth(health.shard, JSON.stringify(health), { ...add }),
        requested: () => deps.queue.repairRequest(),
        ownership: {
          owns: (shard) => this.ownsShard(shard),
          busyElsewhere: (shard) => this.busyElsewhere(shard),
        },
      },
      () => this.baseUrl ?? "replicator",
    );
    this.pool = new WorkerPool(deps.queue, deps.map, copier, this.stats, this.log, {
      ...config,
      now: this.now,
      random: deps.random ?? Math.random,
      probe: (target) => {
        const url = deps.map.snapshot().servers[target]?.url;
        return url === undefined
          ? Promise.resolve(false)
          : nodes.healthy(url, { timeoutMs: PROBE_TIMEOUT_MS });
      },
      probeEveryMs: PROBE_EVERY_MS,
    });
    this.server = createServer((req, res) => void this.route(req, res));
  }

  get url(): string {
    if (!this.baseUrl) throw new BackpackError("UNAVAILABLE", "the replicator is not started");
    return this.baseUrl;
  }

  async start(): Promise<void> {
    this.baseUrl = await listen(this.server, this.config.host, this.config.port);
    await this.ring.start(this.server, this.baseUrl);
    this.unwatch = this.ring.watchServers(this.deps.map, (id, verdict) => this.follow(id, verdict));
    this.unfollow = followSettings(this.settings, this.ring, this.deps.map);
    this.loop = this.run();
    this.repair.start();
  }

  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  /** The figures of `GET /stats`. */
  async statsJson(): Promise<
    ReplicatorStatsJson & {
      repair: ReturnType<AntiEntropy["status"]>;
      settings: ReturnType<LiveSettings["status"]>;
    }
  > {
    return {
      ...(await this.stats.json(this.pool.active, this.pool.targetsDown())),
      repair: this.repair.status(),
      settings: this.settings.status(),
    };
  }

  /**
   * A shard's repair is this replicator's when the ring's placement names it among the live replicators
   * ("the next one takes over" when it dies). Without the ring every replicator compares every shard.
   */
  private ownsShard(shard: string): boolean {
    const member = this.ring.ring;
    if (!member) return true;
    // Just started: its view may not hold the other replicators yet, and it would take their shards.
    if (!this.ring.settled) return false;
    const owner = this.ring.ownerAmong(`repair:${shard}`, "replicator");
    return owner === undefined || owner === member.id;
  }

  /** True while another replicator's report of a comparison of `shard` under way is fresh. */
  private async busyElsewhere(shard: string): Promise<boolean> {
    if (!this.ring.ring) return false;
    const health = parseHealth(await this.deps.queue.health()).find((h) => h.shard === shard);
    return (
      health?.running != null &&
      health.reporter !== this.baseUrl &&
      Date.now() - health.updatedAt < BUSY_REPORT_MS
    );
  }

  /** The ring's verdict on a node: copies to a suspect or dead one wait, and those in flight are cut. */
  private follow(serverId: string, verdict: string | undefined): void {
    const held = verdict === "suspect" || verdict === "down";
    this.pool.setTargetHeld(serverId, held);
    const url = this.deps.map.snapshot().servers[serverId]?.url;
    if (held && url !== undefined) {
      const to = authority(url);
      this.sockets.cut(to);
      this.lean.cut(to, `the ring holds server ${serverId} ${verdict}`);
    }
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    this.unwatch?.();
    this.unfollow?.();
    await this.ring.stop();
    await this.repair.stop();
    await this.loop;
    // Copies still running after the grace are cut by closing their connections (no per-request abort
    // signal: thousands of listeners on one shared signal cost more CPU than the copies themselves).
    let cut = false;
    const timer = setTimeout(() => {
      cut = true;
      this.lean.destroy();
      void this.agent.destroy();
    }, STOP_GRACE_MS);
    await this.pool.drain();
    clearTimeout(timer);
    await closeServer(this.server, 1000);
    this.lean.close();
    if (!cut) await this.agent.close();
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      await this.pool.room();
      const room = Math.min(this.pool.free, this.config.batchSize);
      if (room === 0 || this.stopping) continue;
      let leased;
      try {
        leased = await this.deps.queue.lease(room, this.config.leaseMs, LEASE_WAIT_MS);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, "cannot lease tasks; retrying");
        await sleep(500);
        continue;
      }
      for (const l of leased) this.pool.submit(l);
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET" && req.method !== "HEAD") {
        throw new BackpackError("METHOD_NOT_ALLOWED", `${req.method} is not allowed here`);
      }
      if (path === "/stats") sendJson(res, 200, await this.statsJson());
      else if (path === "/metrics") await sendMetrics(res, this.registry);
      else if (path === "/ring") sendJson(res, 200, this.ring.view());
      else if (path === "/healthz") {
        if (this.stopping) throw new BackpackError("SHUTTING_DOWN", "the replicator is stopping");
        sendJson(res, 200, { ok: true, mapConnected: this.deps.map.connected });
      } else throw new BackpackError("NOT_FOUND", `no such endpoint ${path}`);
    } catch (err) {
      sendError(res, err, this.log);
    }
  }
}
