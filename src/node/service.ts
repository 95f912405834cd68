import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Agent } from "undici";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { ClientErrors, MAX_HEADER_BYTES, tooManyHeaders } from "../common/client-error.js";
import { BackpackError } from "../common/errors.js";
import { closeServer, listen } from "../common/http.js";
import { silentLogger, type Logger } from "../common/logger.js";
import type { Service } from "../common/service.js";
import { originOf } from "../common/version.js";
import { createAgent } from "../client/http-agent.js";
import { CoordinatorClient } from "../client/coordinator-client.js";
import { followSettings, LiveSettings } from "../cluster/settings.js";
import { ServiceRing } from "../ring/service-ring.js";
import { openStore } from "../storage/store.js";
import type { Store } from "../storage/types.js";
import { IdleWatch } from "../common/idle-watch.js";
import type { NodeConfig } from "./config.js";
import { respondError, type NodeContext } from "./context.js";
import { NodeStats } from "./node-stats.js";
import { route } from "./router.js";
import { UploadGate } from "./upload-gate.js";
import { awayTooLong, Heartbeat } from "./heartbeat.js";
import { MaintenanceTurn } from "./maintenance-turn.js";

export interface NodeServiceDeps {
  log?: Logger;
  /** How long `stop()` lets in-flight requests finish before cutting their connections. */
  stopGraceMs?: number;
}

/**
 * A storage node: the store of one data dir served over HTTP (see docs/http-api.md, "Storage node").
 * Composition only: the handlers live in read-/write-/admin-handler.ts.
 */
export class NodeService implements Service {
  private server: Server | undefined;
  private ctx: NodeContext | undefined;
  private heartbeat: Heartbeat | undefined;
  /** Connections to coordinators (the turns of background work ask them for this node's shard). */
  private agent: Agent | undefined;
  private baseUrl: string | undefined;
  private stopping = false;
  private stopped: Promise<void> | undefined;
  private inflight = 0;
  private clientErrors: ClientErrors | undefined;
  private drained: (() => void) | undefined;
  private readonly log: Logger;

  constructor(
    readonly config: Readonly<NodeConfig>,
    private readonly deps: NodeServiceDeps = {},
  ) {
    this.log = deps.log ?? silentLogger;
  }

  get url(): string {
    if (this.baseUrl === undefined) throw new BackpackError("NOT_INITIALIZED", "the node is not started");
    return this.baseUrl;
  }

  /** The open store (for the embedded cluster and tests); throws before `start()`. */
  get store(): Store {
    if (!this.ctx) throw new BackpackError("NOT_INITIALIZED", "the node is not started");
    return this.ctx.store;
  }

  async start(): Promise<void> {
    const c = this.config;
    const turn = new MaintenanceTurn(this.log);
    const store = await openStore({
      dir: c.dataDir,
      sync: c.sync,
      volumeMaxBytes: c.volumeMaxBytes,
      compactGarbageRatio: c.compactGarbageRatio,
      readCacheBytes: c.readCacheBytes,
      tombstoneGraceMs: c.tombstoneGraceMs,
      scrubBytesPerSec: c.scrubBytesPerSec,
      scrubEveryMs: c.scrubEveryMs,
      turn: turn.wait,
      // Versions of writes that come without one (straight to the node) are stamped here.
      origin: originOf(`node ${resolve(c.dataDir)}`),
      log: this.log,
    });
    const heartbeat = new Heartbeat(c.dataDir);
    const away = awayTooLong(await heartbeat.lastAlive(), Date.now(), c.tombstoneGraceMs);
    if (away && !c.rejoin) {
      // No heartbeat until it is reset: a mere restart must not make the old data look fresh.
      this.log.warn({ dataDir: c.dataDir }, away);
    } else {
      await heartbeat.start();
      this.heartbeat = heartbeat;
    }
    const gate = new UploadGate(c.maxInflightUploads, c.maxInflightBytes);
    const ring = new ServiceRing(c.ring, "node", this.log);
    const ctx: NodeContext = {
      config: c,
      store,
      gate,
      idle: new IdleWatch(c.bodyTimeoutMs, undefined, c.minBodyRate),
      log: this.log,
      token: c.writeToken === undefined ? undefined : Buffer.from(c.writeToken, "utf8"),
      now: () => performance.now(),
      awayTooLong: c.rejoin ? undefined : away,
      ring,
      turn,
      settings: new LiveSettings(this.log),
      stats: new NodeStats(
        () => store.stats(),
        () => ({ uploads: gate.inflightUploads, bytes: gate.inflightBytes }),
        Date.now(),
      ),
    };
    this.ctx = ctx;
    const server = createServer({
      headersTimeout: c.headersTimeoutMs,
      // Whole-request time is not bounded: a large body on a slow link is fine as long as bytes keep coming
      // (the body idle timeout), and slow headers are bounded by headersTimeout.
      requestTimeout: 0,
      keepAliveTimeout: c.keepAliveTimeoutMs,
      // How often the header deadline is checked; the default (30 s) would let short timeouts drift.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(c.headersTimeoutMs / 4))),
      maxHeaderSize: MAX_HEADER_BYTES,
      requireHostHeader: false,
    });
    server.on("request", (req: IncomingMessage, res: ServerResponse) => this.dispatch(req, res, false));
    // Expect: 100-continue is answered only after the upload was authorised and admitted.
    server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => this.dispatch(req, res, true));
    const clientErrors = new ClientErrors((kind) => {
      if (kind === "timeout") ctx.stats.refused.timeout++;
      else ctx.stats.refused.bad_request++;
    });
    this.clientErrors = clientErrors;
    server.on("clientError", clientErrors.handle);
    this.server = server;
    try {
      this.baseUrl = await listen(server, c.host, c.port);
      await ring.start(server, this.baseUrl);
      const member = ring.ring;
      if (member) {
        const agent = createAgent({ connections: 2 });
        this.agent = agent;
        const coordinators = new CoordinatorClient(agent, { timeoutMs: 5000 });
        followSettings(ctx.settings, ring);
        // A coordinator's view of the map gives this node its shard and, for a node that missed a settings
        // delta (started later, or away), the settings.
        turn.start(member, `http://${member.addr}`, async (url) => {
          const view = await coordinators.cluster(url);
          ctx.settings.offer(view.settings, "a coordinator's /cluster");
          return view;
        });
      }
    } catch (err) {
      await closeServer(server, 0);
      await store.close();
      throw err;
    }
  }

  /** The node's ring member, when the ring is on (for the embedded cluster and tests). */
  get ring(): ServiceRing | undefined {
    return this.ctx?.ring;
  }

  private dispatch(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    const ctx = this.ctx;
    if (!ctx) return;
    this.clientErrors?.track(res);
    if (tooManyHeaders(req)) {
      res.setHeader("connection", "close");
      respondError(
        ctx,
        req,
        res,
        new BackpackError("HEADERS_TOO_LARGE", "request has too many header fields"),
      );
      return;
    }
    if (this.stopping) {
      res.setHeader("connection", "close");
      respondError(
        ctx,
        req,
        res,
        new BackpackError("SHUTTING_DOWN", "the node is shutting down", { retryAfterSec: 1 }),
      );
      return;
    }
    this.inflight++;
    // route() answers every error itself; the guards are only there so a bug cannot kill the process.
    let pending: Promise<void> | undefined;
    try {
      pending = route(ctx, req, res, expectContinue);
    } catch (err) {
      this.lost(res, err);
    }
    if (pending === undefined) this.done();
    else {
      void pending.then(
        () => this.done(),
        (err: unknown) => {
          this.lost(res, err);
          this.done();
        },
      );
    }
  }

  private done(): void {
    if (--this.inflight === 0) this.drained?.();
  }

  private lost(res: ServerResponse, err: unknown): void {
    this.log.error({ err }, "request failed outside its handler");
    res.destroy();
  }

  /** Refuses new requests (503 SHUTTING_DOWN), lets in-flight ones finish, closes the store. Idempotent. */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.stopping = true;
    // Leave first: coordinators stop sending uploads here while the requests in flight finish.
    await this.ctx?.ring.stop();
    this.ctx?.turn.stop();
    await this.agent?.close();
    if (this.server) await closeServer(this.server, this.deps.stopGraceMs ?? 5000);
    if (this.inflight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
    this.ctx?.idle.close();
    await this.heartbeat?.stop();
    await this.ctx?.store.close();
  }
}
