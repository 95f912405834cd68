import { createServer, type IncomingMessage, type Server } from "node:http";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { BackpackError, systemCode } from "../../common/errors.js";
import { sendError } from "../../common/http.js";
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

/**
 * Ring connections are HTTP/1.1 connections upgraded to this protocol, so a member needs no port of its own:
 * storage nodes, coordinators and replicators take them on the HTTP port they already serve.
 */
export const RING_PROTOCOL = "backpack-ring/1";
const SWITCHED = `HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${RING_PROTOCOL}\r\n\r\n`;
/** Longest answer head accepted before the 101 (anything longer is not a ring member). */
const MAX_SWITCH_BYTES = 4096;

interface Outbound {
  socket: Socket;
  session: OutboundSession;
  /** Bytes of the HTTP answer read so far, until the 101 and its blank line are in. */
  switching: Buffer | undefined;
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
 *
 * A connection starts as an HTTP request `GET /ring` with `Upgrade: backpack-ring/1`; after the `101` answer
 * it carries frames (frame-codec.ts). The accepting side is an HTTP server: the transport's own (`listen`) or
 * a service's (`attach`), which then serves its routes and the ring on one port.
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

  /** Listens on its own HTTP server (ring connections only); resolves with the bound port. */
  async listen(): Promise<number> {
    const server = createServer((_req, res) =>
      sendError(
        res,
        new BackpackError("BAD_REQUEST", `this port carries the ring only (Upgrade: ${RING_PROTOCOL})`),
      ),
    );
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!this.upgrade(req, socket, head)) socket.destroy();
    });
    server.on("clientError", (_err, socket: Duplex) => {
      this.stats.rejected.malformed++;
      socket.destroy();
    });
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
    this.startSweeper();
    const addr = server.address();
    return typeof addr === "object" && addr ? addr.port : this.options.port;
  }

  /** Takes ring connections from a service's HTTP server (its other upgrades are refused). */
  attach(server: Server): void {
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      if (!this.upgrade(req, socket, head)) socket.destroy();
    });
    this.startSweeper();
  }

  /**
   * Takes a connection that asked for `Upgrade: backpack-ring/1`; false (nothing done) for any other upgrade.
   * `head` holds the bytes that came after the request's head (the first frames, possibly).
   */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    if (req.headers.upgrade?.toLowerCase() !== RING_PROTOCOL) return false;
    if (this.closed) {
      socket.destroy();
      return true;
    }
    socket.write(SWITCHED);
    this.accept(socket as Socket, head);
    return true;
  }

  private startSweeper(): void {
    this.sweeper = setInterval(() => this.closeIdle(), 30_000);
    this.sweeper.unref();
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
    // The service's server goes on answering while it stops: its upgrade listener stays and drops ring
    // connections from now on (a peer sees a closed connection, as from a stopped member, not an HTTP answer).
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
    socket.write(
      `GET /ring HTTP/1.1\r\nHost: ${addr}\r\nConnection: Upgrade\r\nUpgrade: ${RING_PROTOCOL}\r\n\r\n`,
    );
    const conn: Outbound = {
      socket,
      switching: Buffer.alloc(0),
      session: new OutboundSession(this.options.secret, self),
      waiting: [],
      waitingBytes: 0,
      lastUsed: Date.now(),
    };
    this.outbound.set(addr, conn);
    this.stats.connectionsOut++;
    let ok = false;
    socket.on("data", (data: Buffer) => {
      try {
        const chunk = this.switched(conn, data);
        if (chunk === undefined) return;
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

  /**
   * Bytes of an outbound connection past the server's `101` answer: undefined while the answer is still
   * coming in; throws FrameError when the server answered anything else (it is no ring member, or its ring
   * is off).
   */
  private switched(conn: Outbound, data: Buffer): Buffer | undefined {
    if (conn.switching === undefined) return data;
    const buf = Buffer.concat([conn.switching, data]);
    const end = buf.indexOf("\r\n\r\n");
    if (end === -1) {
      if (buf.length > MAX_SWITCH_BYTES) throw new FrameError("malformed", "not an HTTP answer");
      conn.switching = buf;
      return undefined;
    }
    const status = buf.toString("latin1", 0, Math.min(end, 64)).split("\r\n", 1)[0] ?? "";
    if (!/^HTTP\/1\.1 101 /.test(status)) {
      throw new FrameError("invalid", `the peer did not take the ring connection: ${status}`);
    }
    conn.switching = undefined;
    return buf.subarray(end + 4);
  }

  private accept(socket: Socket, head: Buffer = Buffer.alloc(0)): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.stats.connectionsIn++;
    this.inbound.add(socket);
    socket.setNoDelay(true);
    // An upgraded connection of a service's HTTP server: no HTTP timeouts apply any more.
    socket.setTimeout(0);
    const session = new InboundSession(this.options.secret, this.options.maxFrameBytes);
    socket.on("error", () => undefined);
    socket.on("close", () => this.inbound.delete(socket));
    // An HTTP server keeps sockets half-open after the peer's FIN; a ring connection ends with its sender.
    socket.on("end", () => socket.destroy());
    socket.write(session.challenge());
    const onData = (chunk: Buffer): void => {
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
    };
    socket.on("data", onData);
    if (head.length > 0) onData(head);
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
