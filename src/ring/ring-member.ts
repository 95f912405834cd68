import { randomBytes } from "node:crypto";
import type { Server } from "node:http";
import { BackpackError } from "../common/errors.js";
import { silentLogger, type Logger } from "../common/logger.js";
import type { Service } from "../common/service.js";
import type { RingMemberConfig } from "./config.js";
import type { Member } from "./core/member-table.js";
import { RingCore, type Outgoing, type RingCoreStats, type RingEvent } from "./core/ring-core.js";
import { stampHandOver, type TokenView } from "./core/token.js";
import { ringPosition } from "./core/k-rings.js";
import { emptyTransportStats, TcpTransport, type TransportStats } from "./transport/tcp-transport.js";

export interface RingMemberDeps {
  log?: Logger;
  /** Milliseconds on a clock shared by the machine (token hop timestamps); monotonic within the process. */
  now?: () => number;
  random?: () => number;
  /**
   * Take ring connections on this HTTP server (`Upgrade: backpack-ring/1` on the port it already serves)
   * instead of listening on `host:port`; `config.advertise` then says where others reach it.
   */
  server?: Server;
}

/** The state a service shows at `/ring` and the dashboard draws. */
export interface RingView {
  self: string;
  addr: string;
  checksum: string;
  tick: number;
  epoch: number;
  lapMs: number | undefined;
  hopTransitMs: number | undefined;
  pingRttMs: number | undefined;
  localHealth: number;
  members: Array<{
    id: string;
    addr: string;
    status: Member["status"];
    incarnation: number;
    meta: Readonly<Record<string, string>>;
  }>;
  /** Live members in order on each of the K rings (ring 0 carries the token). */
  rings: string[][];
  neighbours: string[];
  transport: TransportStats;
  /** What this member's detector did since it started (probes, suspicions it raised, deaths it declared). */
  detector: RingCoreStats;
}

/**
 * One process's membership in the ring: the pure `RingCore` driven by real time and the TCP transport.
 * This is the API the cluster uses (coordinators skip members the ring reports dead, replicators hold
 * tasks for them, caches place keys with `owners`).
 */
export class RingMember implements Service {
  private core: RingCore | undefined;
  private transport: TcpTransport | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private readonly listeners: Array<(e: RingEvent) => void> = [];
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly server: Server | undefined;
  private address = "";
  private stopped = false;

  constructor(
    readonly config: Readonly<RingMemberConfig>,
    deps: RingMemberDeps = {},
  ) {
    this.log = deps.log ?? silentLogger;
    this.now = deps.now ?? (() => performance.timeOrigin + performance.now());
    this.random = deps.random ?? Math.random;
    this.server = deps.server;
    if (this.server && config.advertise === undefined) {
      throw new BackpackError(
        "INVALID_ARGUMENT",
        "a ring member on a service's HTTP server needs its address",
      );
    }
  }

  get url(): string {
    if (!this.address) throw new BackpackError("NOT_INITIALIZED", "the ring member is not started");
    return `tcp://${this.address}`;
  }

  /** host:port others reach this member at. */
  get addr(): string {
    return this.address;
  }

  get id(): string {
    return this.requireCore().id;
  }

  async start(): Promise<void> {
    if (this.core) return;
    const c = this.config;
    const transport = new TcpTransport({
      host: c.host,
      port: c.port,
      secret: c.secret === undefined ? undefined : Buffer.from(c.secret, "utf8"),
      maxFrameBytes: c.maxFrameBytes,
      maxQueueBytes: c.maxQueueBytes,
      connectTimeoutMs: Math.max(1000, 2 * c.periodMs),
      log: this.log,
      onMessage: (msg) => {
        this.core?.receive(msg, this.now());
        this.pump();
      },
      onSendFailed: (out: Outgoing) => {
        this.core?.sendFailed(out, this.now());
        this.pump();
      },
    });
    if (this.server) {
      transport.attach(this.server);
      this.address = c.advertise as string;
    } else {
      const port = await transport.listen();
      this.address = c.advertise ?? `${c.host.includes(":") ? `[${c.host}]` : c.host}:${port}`;
    }
    const id = c.id ?? this.address;
    transport.identify(id, this.address);
    this.transport = transport;
    const core = new RingCore(
      {
        id,
        addr: this.address,
        meta: c.meta,
        seeds: c.seeds.filter((s) => s !== this.address),
        periodMs: c.periodMs,
        probeTimeoutMs: c.probeTimeoutMs,
        suspicionMult: c.suspicionMult,
        lifeguard: c.lifeguard,
        rings: c.rings,
        tokenHoldMs: c.tokenHoldMs,
        // A restarted process starts above any incarnation it may have had (refutation would fix it too, a
        // little later): a boot generation in seconds, as Cassandra does.
        incarnation: Math.floor(Date.now() / 1000) - 1_700_000_000,
      },
      this.now(),
      this.random,
    );
    core.onEvent((e) => {
      for (const l of this.listeners) l(e);
    });
    this.core = core;
    this.pump();
  }

  /** Leaves gracefully (others see status `left`, not dead) and closes the connections. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.core) {
      this.core.leave(this.now());
      for (const out of this.core.drain()) this.transport?.send(out);
    }
    await this.transport?.close();
  }

  /** Joins (again) through these seed addresses. */
  join(seeds: readonly string[]): void {
    this.requireCore().join(seeds, this.now());
    this.pump();
  }

  /** Same as stop(): announce `left`, close. */
  async leave(): Promise<void> {
    return this.stop();
  }

  members(): Member[] {
    return this.requireCore().members();
  }

  status(id: string): Member | undefined {
    return this.requireCore().status(id);
  }

  /** Subscribes to member changes, deliveries and ticks; returns the unsubscribe function. */
  onChange(listener: (e: RingEvent) => void): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** Floods a delta to every member; each emits `{type: "delivered"}`. Returns its id. */
  broadcast(data: unknown): { origin: string; seq: number } {
    const id = this.requireCore().broadcast(data, this.now());
    this.pump();
    return id;
  }

  setMeta(meta: Readonly<Record<string, string>>): void {
    this.requireCore().setMeta(meta, this.now());
    this.pump();
  }

  owner(key: string): string | undefined {
    return this.requireCore().owner(key);
  }

  owners(key: string, count: number): string[] {
    return this.requireCore().owners(key, count);
  }

  /**
   * The live member just before `id` on ring 0, where `id` is or would be: the one "holding its hand" (the
   * seed's picture), which notices first when it falls and may restart it. Undefined in an empty view.
   */
  predecessorOf(id: string): string | undefined {
    const order = this.requireCore()
      .ringOrder(0)
      .filter((m) => m !== id);
    const at = ringPosition(id, 0);
    let before: string | undefined;
    for (const m of order) {
      const p = ringPosition(m, 0);
      if (p < at || (p === at && m < id)) before = m;
    }
    return before ?? order.at(-1);
  }

  lapTime(): number | undefined {
    return this.requireCore().tokenView().lapMs;
  }

  tick(): number {
    return this.requireCore().tokenView().tick;
  }

  token(): TokenView {
    return this.requireCore().tokenView();
  }

  view(): RingView {
    const core = this.requireCore();
    const t = core.tokenView();
    return {
      self: core.id,
      addr: this.address,
      checksum: core.checksum.toString(16).padStart(8, "0"),
      tick: t.tick,
      epoch: t.epoch,
      lapMs: t.lapMs,
      hopTransitMs: t.hopTransitMs,
      pingRttMs: core.pingRttMs,
      localHealth: core.localHealth,
      members: core
        .members()
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        .map((m) => ({ id: m.id, addr: m.addr, status: m.status, incarnation: m.incarnation, meta: m.meta })),
      rings: Array.from({ length: core.config.rings }, (_, r) => core.ringOrder(r)),
      neighbours: core.neighbours(),
      transport: this.transport ? structuredClone(this.transport.stats) : emptyTransportStats(),
      detector: { ...core.stats },
    };
  }

  private requireCore(): RingCore {
    if (!this.core) throw new BackpackError("NOT_INITIALIZED", "the ring member is not started");
    return this.core;
  }

  /** Sends what the core produced and re-arms the single timer at the core's next deadline. */
  private pump(): void {
    const core = this.core;
    if (!core || this.stopped) return;
    for (const out of core.drain()) {
      if (out.msg.t === "token") stampHandOver(out.msg, core.id, this.now());
      this.transport?.send(out);
    }
    const next = core.nextDeadline();
    if (next === undefined || next >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(
      () => {
        this.timerAt = Infinity;
        this.timer = undefined;
        // After a stall, let the poll phase read what already arrived (acks!) before timers judge probes.
        setImmediate(() => {
          if (this.stopped) return;
          core.advance(this.now());
          this.pump();
        });
      },
      Math.max(0, next - this.now()),
    );
  }
}

/** A random cluster secret (hex), for `backpack ring-demo --secret-file` and tests. */
export function newClusterSecret(): string {
  return randomBytes(32).toString("hex");
}
