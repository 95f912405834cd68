import { createServer, connect, type Server, type Socket } from "node:net";
import { BackpackError, systemCode } from "../../common/errors.js";
import type { Logger } from "../../common/logger.js";
import type { Outgoing } from "../core/ring-core.js";
import type { Message } from "../core/messages.js";
import { FrameError, type FrameFault } from "./frame-codec.js";
import { InboundSession, OutboundSession } from "./session.js";

export interface TransportOptions {
  host: string;
  port: number;
  /** Cluster secret: when set every frame is authenticated and peers without it are refused. */
  secret: Buffer | undefined;
  maxFrameBytes: number;
  /** Bytes allowed to wait in one connection's send buffer; beyond that messages are dropped (SWIM tolerates loss). */
  maxQueueBytes: number;
  connectTimeoutMs: number;
  log: Logger;
  onMessage(msg: Message): void;
  onSendFailed(out: Outgoing): void;
}

export interface TransportStats {
  framesIn: number;
  framesOut: number;
  bytesIn: number;
  bytesOut: number;
  connectionsIn: number;
  connectionsOut: number;
  connectFailures: number;
  dropped: number;
  rejected: Record<FrameFault, number>;
}

interface Outbound {
  socket: Socket;
  session: OutboundSession;
  waiting: Outgoing[];
  waitingBytes: number;
  lastUsed: number;
}

/**
 * Persistent TCP connections between ring members, as the seed pictures them: a member is a client of the
 * members it sends to (its successors first of all) and a server for those that send to it (its
 * predecessors). One outbound connection per peer, opened on first use, kept while used, re-opened after a
 * failure with backoff. Bad input from a peer closes that connection and is counted; it never throws out
 * of here.
 */
export class TcpTransport {
  private server: Server | undefined;
  private readonly outbound = new Map<string, Outbound>();
  private readonly inbound = new Set<Socket>();
  private readonly failedUntil = new Map<string, { until: number; backoffMs: number }>();
  private self: { id: string; addr: string } | undefined;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;
  readonly stats: TransportStats = emptyTransportStats();

  constructor(private readonly options: TransportOptions) {}

  /** Listens; resolves with the bound port. */
  async listen(): Promise<number> {
    const server = createServer((socket) => this.accept(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.options.port, this.options.host, () => {
        server.off("error", reject);
        resolve();
      });
    }).catch((err: unknown) => {
      if (systemCode(err) === "EADDRINUSE" || systemCode(err) === "EACCES") {
        const what = `${this.options.host}:${this.options.port}`;
        throw new BackpackError("UNAVAILABLE", `cannot listen on ${what} for the ring: ${systemCode(err)}`, {
          cause: err,
        });
      }
      throw err;
    });
    server.on("error", (err) => this.options.log.error({ err }, "ring listener error"));
    this.sweeper = setInterval(() => this.closeIdle(), 30_000);
    this.sweeper.unref();
    const addr = server.address();
    return typeof addr === "object" && addr ? addr.port : this.options.port;
  }

  /** Sets who we are (sent in every hello); must be called before the first send. */
  identify(id: string, addr: string): void {
    this.self = { id, addr };
  }

  send(out: Outgoing): void {
    if (this.closed || !this.self) return;
    let conn = this.outbound.get(out.to);
    if (!conn || conn.socket.destroyed) {
      const failed = this.failedUntil.get(out.to);
      if (failed && failed.until > Date.now()) {
        this.options.onSendFailed(out);
        return;
      }
      conn = this.open(out.to, this.self);
      if (!conn) {
        this.options.onSendFailed(out);
        return;
      }
    }
    conn.lastUsed = Date.now();
    if (!conn.session.ready) {
      const bytes = approxBytes(out.msg);
      if (conn.waitingBytes + bytes > this.options.maxQueueBytes) {
        this.stats.dropped++;
        return;
      }
      conn.waiting.push(out);
      conn.waitingBytes += bytes;
      return;
    }
    this.write(conn, out);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    // Let queued frames (a leave announcement) reach the kernel before closing.
    await Promise.all(
      [...this.outbound.values()].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.socket.destroyed) return resolve();
            const t = setTimeout(() => {
              c.socket.destroy();
              resolve();
            }, 500);
            c.socket.end(() => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
    for (const s of this.inbound) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private write(conn: Outbound, out: Outgoing): void {
    const body = Buffer.from(JSON.stringify(out.msg));
    if (body.length + 64 > this.options.maxFrameBytes) {
      this.options.log.warn(
        { type: out.msg.t, bytes: body.length },
        "ring message over the frame limit, dropped",
      );
      this.stats.dropped++;
      return;
    }
    // Back-pressure: a peer that does not read is not allowed to grow our memory.
    if (conn.socket.writableLength > this.options.maxQueueBytes) {
      this.stats.dropped++;
      return;
    }
    const frame = conn.session.encodeBody(body);
    this.stats.framesOut++;
    this.stats.bytesOut += frame.length;
    conn.socket.write(frame);
  }

  private open(addr: string, self: { id: string; addr: string }): Outbound | undefined {
    const target = parseAddr(addr);
    if (!target) return undefined;
    const socket = connect({ host: target.host, port: target.port });
    socket.setNoDelay(true);
    socket.setTimeout(this.options.connectTimeoutMs);
    const conn: Outbound = {
      socket,
      session: new OutboundSession(this.options.secret, self),
      waiting: [],
      waitingBytes: 0,
      lastUsed: Date.now(),
    };
    this.outbound.set(addr, conn);
    this.stats.connectionsOut++;
    let ok = false;
    socket.on("data", (chunk: Buffer) => {
      try {
        const hello = conn.session.push(chunk);
        if (hello) {
          ok = true;
          socket.setTimeout(0);
          this.failedUntil.delete(addr);
          socket.write(hello);
          const waiting = conn.waiting;
          conn.waiting = [];
          conn.waitingBytes = 0;
          for (const out of waiting) this.write(conn, out);
        }
      } catch (err) {
        this.reject(socket, err, addr);
      }
    });
    socket.on("timeout", () => socket.destroy());
    socket.on("error", () => undefined);
    socket.on("close", () => {
      if (this.outbound.get(addr) === conn) this.outbound.delete(addr);
      if (!ok) {
        this.stats.connectFailures++;
        const prev = this.failedUntil.get(addr);
        const backoffMs = Math.min(5000, prev ? prev.backoffMs * 2 : 100);
        this.failedUntil.set(addr, { until: Date.now() + backoffMs, backoffMs });
        if (this.failedUntil.size > 4096) this.failedUntil.clear();
      }
      for (const out of conn.waiting) this.options.onSendFailed(out);
      conn.waiting = [];
    });
    return conn;
  }

  private accept(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.stats.connectionsIn++;
    this.inbound.add(socket);
    socket.setNoDelay(true);
    const session = new InboundSession(this.options.secret, this.options.maxFrameBytes);
    socket.on("error", () => undefined);
    socket.on("close", () => this.inbound.delete(socket));
    socket.write(session.challenge());
    socket.on("data", (chunk: Buffer) => {
      this.stats.bytesIn += chunk.length;
      let messages: Message[];
      try {
        messages = session.push(chunk);
      } catch (err) {
        this.reject(socket, err, session.peer?.addr ?? socket.remoteAddress ?? "?");
        return;
      }
      for (const msg of messages) {
        this.stats.framesIn++;
        try {
          this.options.onMessage(msg);
        } catch (err) {
          // A bug in handling one message must not take the listener down; log it once with its cause.
          this.options.log.error({ err, type: msg.t }, "ring message handler failed");
        }
      }
    });
  }

  private reject(socket: Socket, err: unknown, peer: string): void {
    const fault: FrameFault = err instanceof FrameError ? err.fault : "invalid";
    this.stats.rejected[fault]++;
    this.options.log.warn({ peer, fault, err: (err as Error).message }, "ring connection refused");
    socket.destroy();
  }

  private closeIdle(): void {
    const now = Date.now();
    for (const [addr, c] of this.outbound) {
      if (now - c.lastUsed > 60_000) {
        c.socket.end();
        this.outbound.delete(addr);
      }
    }
  }
}

export function parseAddr(addr: string): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]*)\]?:(\d{1,5})$/.exec(addr);
  if (!m?.[1]) return undefined;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1], port } : undefined;
}

function approxBytes(msg: Message): number {
  return msg.t === "sync" ? 64 * msg.members.length + 64 : 256;
}

/** Counters of a transport that has not seen anything yet. */
export function emptyTransportStats(): TransportStats {
  return {
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    connectionsIn: 0,
    connectionsOut: 0,
    connectFailures: 0,
    dropped: 0,
    rejected: { oversized: 0, malformed: 0, "bad-mac": 0, replay: 0, invalid: 0 },
  };
}
