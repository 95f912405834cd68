import { connect, type Socket } from "node:net";
import { Readable } from "node:stream";
import { BackpackError } from "../common/errors.js";

/** A node's answer. */
export interface LeanReply {
  status: number;
  /** Response headers, names in lower case (a repeated header keeps its last value). */
  headers: Record<string, string>;
  /** The whole body when it is at most the request's `bufferBytes` long (empty for HEAD, 204 and 304). */
  body: Buffer | undefined;
  /** The body as a stream when it is longer: read it to the end or destroy it. */
  stream: Readable | undefined;
  /** A streamed request body: a chunk of it was taken before the answer (so it cannot be sent again). */
  bodyTaken: boolean;
}

export interface LeanRequest {
  method: "GET" | "HEAD" | "POST" | "PUT";
  /** Origin, `http://host:port`. */
  origin: string;
  /** Path and query, already percent-encoded. */
  path: string;
  headers?: Record<string, string>;
  /**
   * A request body: in memory (sent with the head in one write, and again as it is when the request is
   * retried), or as chunks of a known total `length` (written as they come, at the pace the node takes them;
   * such a request is never retried).
   */
  body?: Buffer | { length: number; chunks: AsyncIterable<Uint8Array> };
  /** Gives the request up: it fails with UPSTREAM_FAILED and its connection is closed. */
  signal?: AbortSignal;
  /**
   * A streamed body waits for the server's `100 Continue` (sent with `Expect: 100-continue`): nothing is taken
   * from it until the server has admitted the request, so a refusal (an overloaded node) leaves it whole.
   */
  expectContinue?: boolean;
  /** Time allowed for the answer's head and a buffered body, and between two chunks of a streamed body. */
  timeoutMs: number;
  /** Bodies up to this size come whole (`body`); longer ones as a stream. */
  bufferBytes: number;
}

const UNSUPPORTED = "unsupported";

/**
 * Whether `err` says the request or its answer is outside what this client reads (an `https:` origin, a
 * chunked body or one delimited by closing the connection): storage nodes never send those, and a caller that
 * may meet one asks again with a full HTTP client.
 */
export function isUnsupported(err: unknown): boolean {
  return err instanceof BackpackError && err.details?.[UNSUPPORTED] === true;
}

function unsupported(what: string): BackpackError {
  return new BackpackError("UPSTREAM_FAILED", what, { details: { [UNSUPPORTED]: true } });
}

const MAX_HEAD_BYTES = 16 * 1024;
const CRLF2 = Buffer.from("\r\n\r\n");
/** How long an idle connection is kept when the server does not say (`Keep-Alive: timeout=N`). */
const DEFAULT_IDLE_MS = 4000;
/**
 * Idle connections are closed this long (at most half the server's timeout) before the server's own keep-alive
 * timeout, to avoid the race of a request sent as the server closes.
 */
const IDLE_MARGIN_MS = 1000;

interface Exchange {
  request: LeanRequest;
  /** Sent on a connection that had served a request before: a close before any answer is retried once. */
  reused: boolean;
  resolve(reply: LeanReply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout | undefined;
  target: Target;
  /** The request as sent. */
  head: string;
  /** Already sent again once on a fresh connection. */
  retried: boolean;
  /** Set once the head is parsed. */
  reply?: LeanReply;
  remaining: number;
  chunks: Buffer[];
  /** A streamed body is still being written: the connection cannot serve another request after this one. */
  sending: boolean;
  /** The streamed body waits for `100 Continue` before it goes out. */
  pumpOnContinue: (() => void) | undefined;
  /** A chunk of the streamed body was taken. */
  bodyTaken: boolean;
}

interface Conn {
  socket: Socket;
  key: string;
  pending: Buffer | undefined;
  exchange: Exchange | undefined;
  reusable: boolean;
  idleMs: number;
  idleTimer: NodeJS.Timeout | undefined;
  served: number;
}

/**
 * A lean keep-alive HTTP/1.1 client for the exchanges coordinators and replicators make with storage nodes:
 * GET or HEAD of a file, a PUT of a file (a body in memory goes with the head in one write; a streamed one at the
 * pace the node takes it, its head with the first chunk, nothing taken from it before the node accepted the
 * connection), and a batch of small writes (`POST /_backpack/batch`). One request at a time per connection,
 * idle connections kept per origin (closed before the server's keep-alive timeout), answers framed by
 * `Content-Length` read straight off the socket: a small body arrives as one Buffer, a larger one as a stream
 * with back-pressure. It costs about half of what a general client costs per request (measured in `npm run
 * bench:cluster`). Anything it does not read (chunked answers, `https:` origins: `handles(origin)`) fails so
 * that `isUnsupported(err)` holds, for the caller to fall back to a full client; transport failures and
 * timeouts are `UPSTREAM_FAILED` / `UPSTREAM_TIMEOUT`.
 */
export class LeanClient {
  private readonly idle = new Map<string, Conn[]>();
  private readonly conns = new Set<Conn>();
  private closed = false;

  constructor(private readonly options: { connectTimeoutMs?: number; maxIdlePerOrigin?: number } = {}) {}

  request(req: LeanRequest): Promise<LeanReply> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(new BackpackError("UNAVAILABLE", "the client is closed"));
        return;
      }
      const target = parseOrigin(req.origin);
      if (target === undefined) {
        reject(unsupported(`${req.origin} is not an http: origin`));
        return;
      }
      const head = requestHead(req, target.authority);
      if (head instanceof BackpackError) {
        reject(head);
        return;
      }
      const ex: Exchange = {
        request: req,
        reused: false,
        resolve,
        reject,
        timer: undefined,
        target,
        head,
        // A streamed body cannot be sent again.
        retried: req.body !== undefined && !Buffer.isBuffer(req.body),
        remaining: 0,
        chunks: [],
        sending: false,
        pumpOnContinue: undefined,
        bodyTaken: false,
      };
      if (req.signal) {
        if (req.signal.aborted) {
          reject(new BackpackError("UPSTREAM_FAILED", `${req.method} ${req.origin}: given up`));
          return;
        }
        req.signal.addEventListener("abort", () => this.giveUp(ex), { once: true });
      }
      this.send(ex);
    });
  }

  /** Whether this client can carry a request to `origin` (an `http:` origin): else ask a full client. */
  handles(origin: string): boolean {
    return parseOrigin(origin) !== undefined;
  }

  /** Closes idle connections and refuses new requests; requests in flight finish. */
  close(): void {
    this.closed = true;
    for (const conns of this.idle.values()) for (const c of conns) c.socket.destroy();
    this.idle.clear();
  }

  /** As `close`, and cuts the requests in flight (they fail with UPSTREAM_FAILED). */
  destroy(): void {
    this.close();
    for (const c of this.conns) c.socket.destroy();
  }

  /**
   * Fails the requests to `authority` (host:port) at once and closes its connections: for a node the ring
   * declared dead, whose answers would otherwise be awaited until their timeout. Returns how many were open.
   */
  cut(authority: string, why: string): number {
    const key = authority.toLowerCase();
    let n = 0;
    for (const c of [...this.conns]) {
      if (c.key.toLowerCase() !== key) continue;
      n++;
      this.fail(c, new BackpackError("UPSTREAM_FAILED", `${authority}: ${why}`));
    }
    return n;
  }

  private send(ex: Exchange): void {
    const conn = this.take(ex.target.authority) ?? this.open(ex.target);
    ex.reused = conn.served > 0;
    conn.exchange = ex;
    this.arm(conn, ex);
    const body = ex.request.body;
    if (body === undefined || body.length === 0) {
      conn.socket.write(ex.head, "latin1");
      return;
    }
    if (!Buffer.isBuffer(body)) {
      ex.sending = true;
      if (ex.request.expectContinue) {
        // The head alone; the body once the server said 100 Continue (or never, after a final answer).
        conn.socket.write(ex.head, "latin1");
        ex.pumpOnContinue = () => void this.pump(conn, ex, body.chunks, false);
        return;
      }
      // The head goes out with the first chunk (one write, one wake-up of the node, not two).
      // Not a chunk is taken before the node took the connection: a node that refuses it leaves the body
      // whole for the next one.
      if (conn.socket.connecting)
        conn.socket.once("connect", () => void this.pump(conn, ex, body.chunks, true));
      else void this.pump(conn, ex, body.chunks, true);
      return;
    }
    conn.socket.cork();
    conn.socket.write(ex.head, "latin1");
    conn.socket.write(body);
    conn.socket.uncork();
  }

  /**
   * Writes a streamed body as its chunks come, waiting for the socket to drain when it is full. The node's
   * silence counts while it does not take what was written; the time spent waiting for the next chunk (a
   * slow uploader) does not. Stops when the exchange ends early (an answer before the whole body, a failure).
   */
  private async pump(
    conn: Conn,
    ex: Exchange,
    chunks: AsyncIterable<Uint8Array>,
    withHead: boolean,
  ): Promise<void> {
    const it = chunks[Symbol.asyncIterator]();
    let head = withHead;
    try {
      for (;;) {
        // Waiting for the uploader's next chunk is not the node's silence.
        clearTimeout(ex.timer);
        ex.bodyTaken = true;
        const next = await it.next();
        if (conn.exchange !== ex) return;
        let full: boolean;
        if (head) {
          head = false;
          conn.socket.cork();
          conn.socket.write(ex.head, "latin1");
          if (!next.done) conn.socket.write(next.value);
          conn.socket.uncork();
          full = conn.socket.writableNeedDrain;
        } else {
          full = !next.done && !conn.socket.write(next.value);
        }
        if (next.done) break;
        if (!full) continue;
        this.arm(conn, ex);
        await new Promise<void>((resolve) => {
          const done = (): void => {
            conn.socket.off("drain", done);
            conn.socket.off("close", done);
            resolve();
          };
          conn.socket.on("drain", done);
          conn.socket.on("close", done);
        });
        if (conn.exchange !== ex) return;
      }
    } catch (err) {
      if (conn.exchange === ex) this.fail(conn, err instanceof Error ? err : new Error(String(err)), false);
      return;
    }
    ex.sending = false;
    // Every byte is out: from now on the node's silence counts until it answers.
    this.arm(conn, ex);
  }

  /** The caller gave the request up (its signal). */
  private giveUp(ex: Exchange): void {
    for (const conn of this.conns) {
      if (conn.exchange === ex) {
        this.fail(
          conn,
          new BackpackError("UPSTREAM_FAILED", `${ex.request.method} ${ex.request.origin}: given up`),
          false,
        );
        return;
      }
    }
  }

  /** (Re)starts the exchange's timer: the head and a buffered body, or the next chunk of a stream. */
  private arm(conn: Conn, ex: Exchange): void {
    clearTimeout(ex.timer);
    ex.timer = setTimeout(() => this.fail(conn, timeout(ex.request)), ex.request.timeoutMs);
  }

  private take(key: string): Conn | undefined {
    const conns = this.idle.get(key);
    const conn = conns?.pop();
    if (conn?.idleTimer) clearTimeout(conn.idleTimer);
    conn?.socket.ref();
    return conn;
  }

  private open(target: Target): Conn {
    const key = target.authority;
    const socket = connect({ host: target.host, port: target.port, noDelay: true });
    const conn: Conn = {
      socket,
      key,
      pending: undefined,
      exchange: undefined,
      reusable: true,
      idleMs: DEFAULT_IDLE_MS,
      idleTimer: undefined,
      served: 0,
    };
    this.conns.add(conn);
    const connectTimer = setTimeout(
      () => this.fail(conn, new BackpackError("UPSTREAM_TIMEOUT", `connecting to ${key} timed out`)),
      this.options.connectTimeoutMs ?? 2000,
    );
    socket.once("connect", () => clearTimeout(connectTimer));
    socket.on("data", (chunk: Buffer) => this.onData(conn, chunk));
    socket.on("error", (err) => this.fail(conn, err));
    socket.on("close", () => {
      clearTimeout(connectTimer);
      this.fail(conn, new Error("the connection closed"));
    });
    return conn;
  }

  private onData(conn: Conn, chunk: Buffer): void {
    const ex = conn.exchange;
    if (ex === undefined) {
      // Bytes nobody asked for: the connection is out of step.
      conn.socket.destroy();
      return;
    }
    if (ex.reply === undefined) {
      const buf = conn.pending ? Buffer.concat([conn.pending, chunk]) : chunk;
      const end = buf.indexOf(CRLF2);
      if (end === -1) {
        if (buf.length > MAX_HEAD_BYTES) this.fail(conn, protocolError(ex, "the answer's head is too large"));
        else conn.pending = buf;
        return;
      }
      conn.pending = undefined;
      let parsed;
      try {
        parsed = parseHead(buf.toString("latin1", 0, end), ex.request.method);
      } catch (err) {
        this.fail(conn, err as Error);
        return;
      }
      if (parsed.informational) {
        // 1xx: another head follows. A 100 lets a body that waited for it go.
        if (parsed.status === 100 && ex.pumpOnContinue) {
          const pump = ex.pumpOnContinue;
          ex.pumpOnContinue = undefined;
          pump();
        }
        if (buf.length > end + 4) this.onData(conn, buf.subarray(end + 4));
        return;
      }
      conn.reusable = parsed.keepAlive;
      if (parsed.idleMs !== undefined) {
        conn.idleMs = parsed.idleMs - Math.min(IDLE_MARGIN_MS, parsed.idleMs / 2);
      }
      ex.remaining = parsed.length;
      const reply: LeanReply = {
        status: parsed.status,
        headers: parsed.headers,
        body: undefined,
        stream: undefined,
        bodyTaken: ex.bodyTaken,
      };
      ex.reply = reply;
      if (parsed.length > ex.request.bufferBytes) {
        reply.stream = new Readable({
          read: () => {
            // The reader wants more: the wait for the node's next chunk starts now.
            if (conn.exchange === ex && conn.socket.isPaused()) {
              this.arm(conn, ex);
              conn.socket.resume();
            }
          },
          destroy: (err, cb) => {
            // Stopped before the end: the connection cannot be reused.
            if (conn.exchange === ex) this.fail(conn, err ?? new Error("the body was not read"), false);
            cb(err);
          },
        });
        ex.resolve(reply);
      }
      const rest = buf.subarray(end + 4);
      if (rest.length > 0 || parsed.length === 0) this.onBody(conn, ex, rest);
      return;
    }
    this.onBody(conn, ex, chunk);
  }

  private onBody(conn: Conn, ex: Exchange, chunk: Buffer): void {
    if (chunk.length > ex.remaining) {
      this.fail(conn, protocolError(ex, "the answer is longer than its Content-Length"));
      return;
    }
    ex.remaining -= chunk.length;
    const stream = ex.reply?.stream;
    if (stream) {
      if (chunk.length > 0 && !stream.push(chunk)) {
        // The reader is slower than the node: no timeout while it catches up.
        clearTimeout(ex.timer);
        conn.socket.pause();
      } else {
        this.arm(conn, ex);
      }
    } else if (chunk.length > 0) {
      ex.chunks.push(chunk);
    }
    if (ex.remaining > 0) return;
    this.finish(conn, ex);
  }

  private finish(conn: Conn, ex: Exchange): void {
    clearTimeout(ex.timer);
    conn.exchange = undefined;
    // Answered before the whole body went out (a refusal): the rest would be read as the next request.
    if (ex.sending) conn.reusable = false;
    conn.served++;
    const reply = ex.reply!;
    // A streamed body may have paused the socket; the next answer on this connection must flow.
    conn.socket.resume();
    if (reply.stream) reply.stream.push(null);
    else {
      reply.body = ex.chunks.length === 1 ? ex.chunks[0] : Buffer.concat(ex.chunks);
      ex.resolve(reply);
    }
    if (!conn.reusable || this.closed || conn.idleMs === 0) {
      conn.socket.end();
      return;
    }
    const conns = this.idle.get(conn.key) ?? [];
    if (conns.length >= (this.options.maxIdlePerOrigin ?? 256)) {
      conn.socket.end();
      return;
    }
    conns.push(conn);
    conn.socket.unref();
    this.idle.set(conn.key, conns);
    conn.idleTimer = setTimeout(() => this.drop(conn), conn.idleMs);
    conn.idleTimer.unref();
  }

  private drop(conn: Conn): void {
    this.conns.delete(conn);
    const conns = this.idle.get(conn.key);
    const i = conns?.indexOf(conn) ?? -1;
    if (i !== -1) conns!.splice(i, 1);
    if (conns?.length === 0) this.idle.delete(conn.key);
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    conn.socket.destroy();
  }

  /** Ends the exchange on `conn` (if any) with `err` and closes the connection. */
  private fail(conn: Conn, err: Error, retryable = true): void {
    const ex = conn.exchange;
    conn.exchange = undefined;
    this.drop(conn);
    if (ex === undefined) return;
    clearTimeout(ex.timer);
    // A kept-alive connection the server closed as this request went out: ask again on a fresh one.
    const transport = !(err instanceof BackpackError);
    if (retryable && transport && ex.reply === undefined && ex.reused && !ex.retried && !this.closed) {
      ex.retried = true;
      this.send(ex);
      return;
    }
    const e = err instanceof BackpackError ? err : upstream(ex.request, err);
    if (ex.reply?.stream) ex.reply.stream.destroy(e);
    else ex.reject(e);
  }
}

/** Where requests go: `authority` (`host:port`, `[v6]:port`) is the Host header and the pool's key. */
interface Target {
  host: string;
  port: number;
  authority: string;
}

function parseOrigin(origin: string): Target | undefined {
  const m = /^http:\/\/([^/:]+|\[[0-9a-fA-F:.]+\])(?::(\d{1,5}))?\/?$/.exec(origin);
  if (!m) return undefined;
  const bracketed = m[1]!;
  const port = m[2] === undefined ? 80 : Number(m[2]);
  const host = bracketed.startsWith("[") ? bracketed.slice(1, -1) : bracketed;
  return { host, port, authority: `${bracketed}:${port}` };
}

/** The request's head, or the error that keeps it from being sent (nothing in it may break a line). */
function requestHead(req: LeanRequest, host: string): string | BackpackError {
  if (/\s/.test(req.path)) return new BackpackError("BAD_REQUEST", "the request path is not encoded");
  let head = `${req.method} ${req.path} HTTP/1.1\r\nhost: ${host}\r\n`;
  if (req.body !== undefined) head += `content-length: ${req.body.length}\r\n`;
  if (req.expectContinue && req.body !== undefined && !Buffer.isBuffer(req.body))
    head += "expect: 100-continue\r\n";
  for (const [name, value] of Object.entries(req.headers ?? {})) {
    if (/[\r\n\0]/.test(name) || /[\r\n\0]/.test(value)) {
      return new BackpackError("BAD_REQUEST", `header ${JSON.stringify(name)} holds a line break`);
    }
    head += `${name}: ${value}\r\n`;
  }
  return head + "\r\n";
}

interface Head {
  status: number;
  headers: Record<string, string>;
  informational: boolean;
  length: number;
  keepAlive: boolean;
  idleMs: number | undefined;
}

function parseHead(text: string, method: LeanRequest["method"]): Head {
  const lines = text.split("\r\n");
  const m = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0] ?? "");
  if (!m) throw new BackpackError("UPSTREAM_FAILED", `not an HTTP/1.x answer: ${JSON.stringify(lines[0])}`);
  const status = Number(m[2]);
  const headers: Record<string, string> = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new BackpackError("UPSTREAM_FAILED", "a malformed header line in the answer");
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const informational = status >= 100 && status < 200;
  const connection = headers.connection?.toLowerCase() ?? (m[1] === "0" ? "close" : "keep-alive");
  const keepAlive = !connection.includes("close");
  const hint = /timeout=(\d+)/i.exec(headers["keep-alive"] ?? "");
  const idleMs = hint ? Number(hint[1]) * 1000 : undefined;
  const noBody = informational || method === "HEAD" || status === 204 || status === 304;
  if (noBody) return { status, headers, informational, length: 0, keepAlive, idleMs };
  if (headers["transfer-encoding"] !== undefined || !/^\d+$/.test(headers["content-length"] ?? "")) {
    throw unsupported(`the ${status} answer has no Content-Length framing`);
  }
  return { status, headers, informational, length: Number(headers["content-length"]), keepAlive, idleMs };
}

function timeout(req: LeanRequest): BackpackError {
  return new BackpackError(
    "UPSTREAM_TIMEOUT",
    `${req.method} ${req.origin} timed out after ${req.timeoutMs} ms`,
  );
}

function protocolError(ex: Exchange, what: string): BackpackError {
  return new BackpackError("UPSTREAM_FAILED", `${ex.request.method} ${ex.request.origin}: ${what}`);
}

function upstream(req: LeanRequest, err: Error): BackpackError {
  return new BackpackError("UPSTREAM_FAILED", `${req.method} ${req.origin} failed: ${err.message}`, {
    cause: err,
  });
}
