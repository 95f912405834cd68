import { randomInt } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Agent } from "undici";
import { ClientErrors, MAX_HEADER_BYTES, tooManyHeaders } from "../common/client-error.js";
import { BackpackError, toBackpackError } from "../common/errors.js";
import { IdleWatch } from "../common/idle-watch.js";
import { checkContentType, closeServer, listen, sendError, sendJson } from "../common/http.js";
import type { Logger } from "../common/logger.js";
import { silentLogger } from "../common/logger.js";
import { createRegistry, sendMetrics } from "../common/metrics.js";
import type { Service } from "../common/service.js";
import { HybridClock } from "../common/version.js";
import { followSettings, LiveSettings } from "../cluster/settings.js";
import type { ClusterMap } from "../cluster/types.js";
import type { ReplicationQueue } from "../queue/types.js";
import { ServiceRing } from "../ring/service-ring.js";
import { createAgent, OriginSockets } from "../client/http-agent.js";
import { NodeClient } from "../client/node-client.js";
import { LeanClient } from "../client/lean-client.js";
import type { CoordinatorConfig } from "./config.js";
import { AckedVersions } from "./acked-versions.js";
import { createMetrics, type CoordinatorContext } from "./context.js";
import { handleDelete } from "./delete-handler.js";
import { LagWatch } from "./lag-watch.js";
import { MemoryBudget } from "./memory-budget.js";
import { NodeHealth } from "./node-health.js";
import { QueueGate } from "./queue-gate.js";
import { handleRead } from "./read-handler.js";
import type { Random } from "./shard-chooser.js";
import { handleCluster } from "./cluster-handler.js";
import { ADMIN_PREFIX, handleAdmin } from "./admin-handler.js";
import { handleLocate, LOCATE_PREFIX } from "./locate-handler.js";
import { handleList } from "./list-handler.js";
import { LIST_PATH } from "../client/coordinator-client.js";
import { handleStatus, StatusHistory } from "./status-handler.js";
import { collectStats, handleStats, registerHealthMetrics } from "./stats-handler.js";
import { UsageFlusher } from "./usage-flusher.js";
import { beginUpload, type UploadLimits } from "./upload-context.js";
import { UsageTracker } from "./usage-tracker.js";
import { handleWrite } from "./write-handler.js";
import { applyVerdict } from "./ring-health.js";
import { ClientLimits } from "./client-limits.js";

export interface CoordinatorDeps {
  clusterMap: ClusterMap;
  /** Undefined when the cluster map has no queue settings: copies are then made directly. */
  queue: ReplicationQueue | undefined;
  log?: Logger;
  /** Injected for tests and simulations. */
  random?: Random;
  now?: () => number;
  /** Shared connection pool to the nodes; one is created (and closed on stop) when not given. */
  agent?: Agent;
  /** Process-wide metrics (memory, event loop) on /metrics: on in a process of its own. */
  processMetrics?: boolean;
  /**
   * More GET routes served by this coordinator (the dashboard's page at `/ui`): called for a GET or HEAD whose
   * path is not the coordinator's own; resolves true when it answered.
   */
  routes?: (req: IncomingMessage, res: ServerResponse, path: string) => boolean | Promise<boolean>;
}

/**
 * The coordinator: takes uploads (`PUT /<key>`), picks a shard, stores on one of its servers and queues the
 * copies; reads (`GET`/`HEAD /<shard>:<key>`) with failover; deletes; `/stats`, `/metrics`, `/healthz`.
 * Stateless apart from usage deltas not yet flushed (sent on stop). The cluster map and queue are started and
 * stopped by the caller.
 */
export class CoordinatorService implements Service {
  private readonly server: Server;
  private readonly ctx: CoordinatorContext;
  private readonly flusher: UsageFlusher;
  private readonly registry: ReturnType<typeof createRegistry>;
  private readonly ownAgent: Agent | undefined;
  /** Reads from the nodes and uploads to them go through this lean client; the rest through the agent. */
  private readonly lean = new LeanClient();
  private baseUrl: string | undefined;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private startedAt = 0;
  private readonly clientErrors = new ClientErrors();
  /** What every upload body is held to (body timeout, minimum rate, memory), shared by all uploads. */
  private readonly uploads: UploadLimits;
  private uploadsInFlight = 0;
  private readonly history: StatusHistory;
  private readonly routes: CoordinatorDeps["routes"];
  /** The coordinator's ring membership; its verdicts on nodes feed the node health (ring-health.ts). */
  readonly ring: ServiceRing;
  private readonly sockets = new OriginSockets();
  private unwatch: (() => void) | undefined;
  /** Blocklist and fleet-wide per-client rates (the cluster's runtime settings). */
  private readonly limits: ClientLimits;

  constructor(
    readonly config: Readonly<CoordinatorConfig>,
    deps: CoordinatorDeps,
  ) {
    const log = deps.log ?? silentLogger;
    const now = deps.now ?? Date.now;
    const agent = deps.agent ?? createAgent({ connections: 128, sockets: this.sockets });
    this.ownAgent = deps.agent ? undefined : agent;
    this.registry = createRegistry({ service: "coordinator" }, deps.processMetrics ?? false);
    this.uploads = {
      watch: new IdleWatch(config.bodyTimeoutMs, undefined, config.minBodyRate),
      memory: new MemoryBudget(config.maxBufferedBytes),
    };
    const metrics = createMetrics(this.registry);
    const usage = new UsageTracker();
    this.ctx = {
      config,
      map: deps.clusterMap,
      queue: new QueueGate(deps.queue, config.queueTimeoutMs, 1000, now, config.maxBacklog),
      nodes: new NodeClient(
        agent,
        {
          ...(config.nodeToken ? { token: config.nodeToken } : {}),
          timeoutMs: config.nodeTimeoutMs,
          // Small upload bodies to one node in one turn go in one request, stored by one group commit.
          batch: true,
        },
        this.lean,
      ),
      health: new NodeHealth(config.suspectMs, now),
      usage,
      counters: {
        processedUploads: 0,
        processedBytes: 0,
        failedUploads: 0,
        abortedUploads: 0,
        throttledUploads: 0,
        reads: 0,
        readBytes: 0,
      },
      metrics,
      log,
      writeToken: tokenBytes(config.writeToken),
      adminToken: tokenBytes(config.adminToken ?? config.writeToken),
      random: deps.random ?? Math.random,
      now,
      // The origin only breaks ties between coordinators stamping the same microsecond: drawn per start.
      clock: new HybridClock(randomInt(0x10000)),
      acked: new AckedVersions(),
      lagWatch: new LagWatch(config.writeTimeoutMs),
      settings: new LiveSettings(log),
    };
    registerHealthMetrics(this.registry, this.ctx.queue);
    this.ring = new ServiceRing(config.ring, "coordinator", log);
    this.limits = new ClientLimits(this.ctx.settings, this.ring, now);
    this.history = new StatusHistory(() => this.stats());
    this.routes = deps.routes;
    this.flusher = new UsageFlusher(usage, deps.clusterMap, config.usageFlushMs, log, metrics);
    this.server = createServer(
      {
        headersTimeout: config.headersTimeoutMs,
        keepAliveTimeout: config.keepAliveTimeoutMs,
        requestTimeout: 0,
        // How often the header deadline is checked; the default (30 s) let a 20 s timeout fire at up to 50 s.
        connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(config.headersTimeoutMs / 4))),
        maxHeaderSize: MAX_HEADER_BYTES,
      },
      (req, res) => void this.handle(req, res, false),
    );
    // Expect: 100-continue is answered once an upload passed every check before its body (upload-context.ts).
    this.server.on(
      "checkContinue",
      (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res, true),
    );
    // What the HTTP parser refuses (malformed, headers too large or too slow) is answered 400/431/408.
    this.server.on("clientError", this.clientErrors.handle);
  }

  get url(): string {
    if (this.baseUrl === undefined) throw new BackpackError("UNAVAILABLE", "the coordinator is not started");
    return this.baseUrl;
  }

  /** The seed's `/stats` (for embedding, e.g. the dashboard in one process). */
  async stats(): Promise<Awaited<ReturnType<typeof collectStats>>> {
    return collectStats(this.ctx, this.startedAt, this.uploadsNow());
  }

  /** Lets membership (the ring) mark a storage node down or up; down nodes are tried last. */
  setServerDown(serverId: string, down: boolean): void {
    this.ctx.health.setDown(serverId, down);
  }

  /** Uses another replication queue from now on (the caller stops the old one). */
  setQueue(queue: ReplicationQueue | undefined): void {
    this.ctx.queue.replace(queue);
  }

  async start(): Promise<void> {
    this.startedAt = this.ctx.now();
    this.baseUrl = await listen(this.server, this.config.host, this.config.port);
    this.flusher.start();
    this.history.start();
    await this.ring.start(this.server, this.baseUrl);
    const unwatch = this.ring.watchServers(this.ctx.map, (id, verdict, previous) =>
      applyVerdict(this.ctx, (to, why) => this.cut(to, why), id, verdict, previous),
    );
    const unfollow = followSettings(this.ctx.settings, this.ring, this.ctx.map);
    this.limits.start();
    this.unwatch = () => {
      unwatch();
      unfollow();
    };
  }

  /** Ends every request in flight to a node (host:port) at once: the ring holds it dead or suspect. */
  private cut(authority: string, why: string): number {
    return this.sockets.cut(authority) + this.lean.cut(authority, why);
  }

  async stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true;
      this.history.stop();
      this.unwatch?.();
      this.limits.stop();
      await this.ring.stop();
      await closeServer(this.server, this.config.drainMs);
      this.uploads.watch.close();
      this.ctx.lagWatch.close();
      await this.flusher.stop(this.config.drainMs);
      this.lean.close();
      await this.ownAgent?.close().catch(() => undefined);
    })();
    return this.stopped;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): Promise<void> {
    this.clientErrors.track(res);
    try {
      if (tooManyHeaders(req)) {
        res.setHeader("connection", "close");
        throw new BackpackError("HEADERS_TOO_LARGE", "request has too many header fields");
      }
      if (this.stopping) {
        throw new BackpackError("SHUTTING_DOWN", "the coordinator is stopping", { retryAfterSec: 1 });
      }
      if (req.method === "PUT") {
        beginUpload(req, res, this.uploads, expectContinue);
        this.uploadsInFlight++;
        res.once("close", () => this.uploadsInFlight--);
      } else if (expectContinue) res.writeContinue();
      await this.route(req, res);
    } catch (err) {
      const e = toBackpackError(err);
      if (e.code === "CLIENT_ABORTED" || res.destroyed) {
        if (!res.destroyed) res.destroy();
        return;
      }
      // An upload refused before its body was read: close the connection rather than swallow the body.
      if (!req.complete && !res.headersSent) res.setHeader("connection", "close");
      sendError(res, e, this.ctx.log);
    }
  }

  private uploadsNow(): { inflight: number; bufferedBytes: number } {
    return { inflight: this.uploadsInFlight, bufferedBytes: this.uploads.memory.usedBytes };
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = req.url ?? "/";
    const path = target.split("?", 1)[0] ?? "/";
    const method = req.method ?? "GET";
    this.limits.admit(req, path);
    if (method === "GET" || method === "HEAD") {
      if (path === "/stats") return handleStats(this.ctx, res, this.startedAt, this.uploadsNow());
      if (path === "/status") return handleStatus(this.ctx, res, this.url, await this.stats(), this.history);
      if (path === "/metrics") return sendMetrics(res, this.registry);
      if (path === "/cluster") return handleCluster(this.ctx, res);
      if (path === "/ring") return sendJson(res, 200, this.ring.view());
      if (path.startsWith(LOCATE_PREFIX)) return handleLocate(this.ctx, res, target);
      if (path === LIST_PATH) return handleList(this.ctx, res, target);
      if (path === "/healthz") {
        sendJson(res, 200, { status: "ok", cluster_map_connected: this.ctx.map.connected });
        return;
      }
      if (path.startsWith(ADMIN_PREFIX)) return handleAdmin(this.ctx, req, res, path);
      if (!path.includes(":") && this.routes && (await this.routes(req, res, path))) return;
      return handleRead(this.ctx, req, res);
    }
    if (method === "PUT") {
      // Before a byte goes to a node: a node would refuse it, which used to read as a node failure (502).
      checkContentType(req);
      return handleWrite(this.ctx, req, res);
    }
    if (method === "DELETE") return handleDelete(this.ctx, req, res);
    if (method === "POST" && path.startsWith(ADMIN_PREFIX)) return handleAdmin(this.ctx, req, res, path);
    throw new BackpackError(
      "METHOD_NOT_ALLOWED",
      `${method} is not supported (PUT, GET, HEAD, DELETE; POST for ${ADMIN_PREFIX}...)`,
    );
  }
}

function tokenBytes(token: string | undefined): Buffer | undefined {
  return token === undefined ? undefined : Buffer.from(token, "utf8");
}
