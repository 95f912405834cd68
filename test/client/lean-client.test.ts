import assert from "node:assert/strict";
import { createServer as createHttpServer, type RequestListener, type Server } from "node:http";
import { createServer as createNetServer, type Socket } from "node:net";
import type { TestContext } from "node:test";
import { test } from "node:test";
import { createAgent } from "../../src/client/http-agent.js";
import { NodeClient } from "../../src/client/node-client.js";
import { isUnsupported, LeanClient, type LeanReply } from "../../src/client/lean-client.js";
import { hasCode } from "../../src/common/errors.js";

/** A node:http server on a free port, with a count of the connections it accepted. */
async function httpServer(
  t: TestContext,
  handler: RequestListener,
  keepAliveTimeout = 5000,
): Promise<{ origin: string; connections: () => number; server: Server }> {
  const server = createHttpServer(handler);
  server.keepAliveTimeout = keepAliveTimeout;
  let connections = 0;
  server.on("connection", () => connections++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return { origin: `http://127.0.0.1:${port}`, connections: () => connections, server };
}

/** A raw TCP server: `onRequest` gets each socket and the request text it received (one per request). */
async function rawServer(
  t: TestContext,
  onRequest: (socket: Socket, request: string, n: number) => void,
): Promise<{ origin: string; connections: () => number }> {
  let connections = 0;
  let requests = 0;
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let pending = "";
    socket.on("data", (d: Buffer) => {
      pending += d.toString("latin1");
      for (let end = pending.indexOf("\r\n\r\n"); end !== -1; end = pending.indexOf("\r\n\r\n")) {
        const request = pending.slice(0, end + 4);
        pending = pending.slice(end + 4);
        onRequest(socket, request, requests++);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return { origin: `http://127.0.0.1:${port}`, connections: () => connections };
}

function client(t: TestContext): LeanClient {
  const c = new LeanClient({ connectTimeoutMs: 1000 });
  t.after(() => c.close());
  return c;
}

const get = (origin: string, path: string, more: { bufferBytes?: number; timeoutMs?: number } = {}) => ({
  method: "GET" as const,
  origin,
  path,
  timeoutMs: more.timeoutMs ?? 2000,
  bufferBytes: more.bufferBytes ?? 64 * 1024,
});

async function drain(reply: LeanReply): Promise<Buffer> {
  if (reply.body) return reply.body;
  const chunks: Buffer[] = [];
  for await (const c of reply.stream!) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

void test("a small body comes whole, headers in lower case, and the connection is kept for the next request", async (t) => {
  const srv = await httpServer(t, (req, res) => {
    const body = `hello ${req.url}`;
    res.writeHead(200, {
      "Content-Type": "text/plain",
      "Content-Length": Buffer.byteLength(body),
      ETag: '"x"',
      "X-Path": req.url ?? "",
    });
    res.end(body);
  });
  const c = client(t);
  for (let i = 0; i < 20; i++) {
    const reply = await c.request(get(srv.origin, `/k${i}`));
    assert.equal(reply.status, 200);
    assert.equal(reply.body?.toString(), `hello /k${i}`);
    assert.equal(reply.stream, undefined);
    assert.equal(reply.headers["content-type"], "text/plain");
    assert.equal(reply.headers.etag, '"x"');
    assert.equal(reply.headers["x-path"], `/k${i}`);
  }
  assert.equal(srv.connections(), 1, "one keep-alive connection for 20 requests in a row");
});

void test("a body over bufferBytes is a stream that honours back-pressure, then the connection is reused", async (t) => {
  const big = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = i % 251;
  const srv = await httpServer(t, (req, res) => {
    const body = req.url === "/big" ? big : Buffer.from("small");
    res.writeHead(200, { "content-length": body.length });
    res.end(body);
  });
  const c = client(t);
  const reply = await c.request(get(srv.origin, "/big"));
  assert.equal(reply.body, undefined);
  assert.ok(reply.stream);
  // A slow reader: the socket must pause rather than buffer the whole body.
  const chunks: Buffer[] = [];
  for await (const chunk of reply.stream) {
    chunks.push(chunk as Buffer);
    if (chunks.length % 8 === 0) await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(Buffer.concat(chunks).equals(big), "byte-exact");
  const next = await c.request(get(srv.origin, "/small"));
  assert.equal(next.body?.toString(), "small");
  assert.equal(srv.connections(), 1);
});

void test("a reader slower than the timeout is not cut off: the timeout counts the node's silence only", async (t) => {
  const big = Buffer.alloc(8 * 1024 * 1024, 7);
  const srv = await httpServer(t, (_req, res) => {
    res.writeHead(200, { "content-length": big.length });
    res.end(big);
  });
  const c = client(t);
  const reply = await c.request(get(srv.origin, "/big", { timeoutMs: 200 }));
  let n = 0;
  let bytes = 0;
  for await (const chunk of reply.stream!) {
    bytes += (chunk as Buffer).length;
    if (n++ === 2) await new Promise((r) => setTimeout(r, 600));
  }
  assert.equal(bytes, big.length);
});

void test("HEAD, 204 and 304 have no body whatever their Content-Length says; 404 carries its JSON", async (t) => {
  const srv = await httpServer(t, (req, res) => {
    if (req.url === "/head") res.writeHead(200, { "content-length": 1234 }).end();
    else if (req.url === "/304") res.writeHead(304, { etag: '"e"' }).end();
    else if (req.url === "/204") res.writeHead(204).end();
    else
      res
        .writeHead(404, { "content-type": "application/json", "content-length": 20 })
        .end('{"code":"NOT_FOUND"}');
  });
  const c = client(t);
  const head = await c.request({ ...get(srv.origin, "/head"), method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers["content-length"], "1234");
  assert.equal(head.body?.length, 0);
  assert.equal((await c.request(get(srv.origin, "/304"))).status, 304);
  assert.equal((await c.request(get(srv.origin, "/204"))).body?.length, 0);
  const missing = await c.request(get(srv.origin, "/nope"));
  assert.equal(missing.status, 404);
  assert.deepEqual(JSON.parse(missing.body!.toString()), { code: "NOT_FOUND" });
  assert.equal(srv.connections(), 1, "every answer left the connection usable");
});

void test("a kept-alive connection the server closed meanwhile is retried once on a fresh one", async (t) => {
  // The server answers once per connection and closes it without saying so (no `Connection: close`).
  const srv = await rawServer(t, (socket, request) => {
    const path = request.split(" ")[1] ?? "";
    socket.end(`HTTP/1.1 200 OK\r\ncontent-length: ${path.length}\r\n\r\n${path}`);
  });
  const c = client(t);
  for (const path of ["/a", "/bb", "/ccc"]) {
    // Let the close reach the client first for the first two, race it for the last.
    if (path !== "/ccc") await new Promise((r) => setTimeout(r, 20));
    const reply = await c.request(get(srv.origin, path));
    assert.equal(reply.body?.toString(), path);
  }
  assert.equal(srv.connections(), 3);
});

void test("Connection: close and an HTTP/1.0 answer are not kept", async (t) => {
  const srv = await rawServer(t, (socket, _request, n) => {
    const version = n % 2 === 0 ? "HTTP/1.1 200 OK\r\nconnection: close" : "HTTP/1.0 200 OK";
    socket.write(`${version}\r\ncontent-length: 2\r\n\r\nok`);
  });
  const c = client(t);
  for (let i = 0; i < 4; i++) assert.equal((await c.request(get(srv.origin, "/x"))).body?.toString(), "ok");
  assert.equal(srv.connections(), 4);
});

void test("a chunked answer is unsupported here, and NodeClient.read falls back to undici for it", async (t) => {
  const srv = await httpServer(t, (_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.write("chun");
    res.end("ked");
  });
  const c = client(t);
  await assert.rejects(c.request(get(srv.origin, "/k")), (err: unknown) => isUnsupported(err));
  await assert.rejects(
    c.request(get("https://127.0.0.1:1", "/k")),
    (err: unknown) => isUnsupported(err),
    "https origins are not read here",
  );
  const agent = createAgent();
  t.after(() => agent.close());
  const nodes = new NodeClient(agent, { timeoutMs: 2000 }, c);
  const reply = await nodes.read(srv.origin, "k", { bufferBytes: 1024 });
  assert.equal(reply.status, 200);
  assert.equal(reply.body, undefined, "a body of unknown length is streamed");
  assert.equal((await drain(reply)).toString(), "chunked");
});

void test("transport failures, timeouts and broken answers are clear errors, never a wrong body", async (t) => {
  const c = client(t);
  const srv = await rawServer(t, (socket, request) => {
    const path = request.split(" ")[1];
    if (path === "/silent") return;
    if (path === "/short") socket.end("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
    else if (path === "/long") socket.write("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nabcdef");
    else if (path === "/garbage") socket.write("SSH-2.0-OpenSSH\r\n\r\n");
    else if (path === "/bad-length") socket.write("HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n");
    else if (path === "/huge-head") socket.write(`HTTP/1.1 200 OK\r\nx: ${"a".repeat(20_000)}`);
    else if (path === "/cut-stream")
      socket.end(`HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n${"z".repeat(500)}`);
  });
  const started = performance.now();
  await assert.rejects(c.request(get(srv.origin, "/silent", { timeoutMs: 200 })), (err: unknown) =>
    hasCode(err, "UPSTREAM_TIMEOUT"),
  );
  assert.ok(performance.now() - started < 2000, "the timeout is the request's");
  for (const path of ["/short", "/long", "/garbage", "/bad-length", "/huge-head"]) {
    await assert.rejects(
      c.request(get(srv.origin, path)),
      (err: unknown) => hasCode(err, "UPSTREAM_FAILED"),
      path,
    );
  }
  const cut = await c.request(get(srv.origin, "/cut-stream", { bufferBytes: 100 }));
  await assert.rejects(drain(cut), (err: unknown) => hasCode(err, "UPSTREAM_FAILED"));

  // Nothing listens on port 1: refused.
  await assert.rejects(c.request(get("http://127.0.0.1:1", "/x")), (err: unknown) =>
    hasCode(err, "UPSTREAM_FAILED"),
  );
});

void test("a header or path that could split the request is refused before anything is sent", async (t) => {
  let requests = 0;
  const srv = await rawServer(t, () => requests++);
  const c = client(t);
  await assert.rejects(
    c.request({ ...get(srv.origin, "/x"), headers: { range: "bytes=0-1\r\nx-evil: 1" } }),
    (err: unknown) => hasCode(err, "BAD_REQUEST"),
  );
  await assert.rejects(c.request(get(srv.origin, "/x HTTP/1.1\r\n")), (err: unknown) =>
    hasCode(err, "BAD_REQUEST"),
  );
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(requests, 0);
  assert.equal(srv.connections(), 0);
});

void test("close() ends idle connections and refuses new requests", async (t) => {
  const srv = await httpServer(t, (_req, res) => res.end("x"));
  let closed = 0;
  srv.server.on("connection", (s: Socket) => s.on("close", () => closed++));
  const c = new LeanClient();
  await c.request(get(srv.origin, "/a"));
  c.close();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(closed, 1);
  await assert.rejects(c.request(get(srv.origin, "/a")), (err: unknown) => hasCode(err, "UNAVAILABLE"));
});

/**
 * Chunks of `size` bytes, `count` of them, made on demand one event-loop turn apart (as they come from an
 * uploader's socket); `taken` counts the ones handed out.
 */
function chunkSource(count: number, size: number, fail?: number) {
  const state = { taken: 0 };
  const chunks = (async function* () {
    for (let i = 0; i < count; i++) {
      if (i === fail) throw new Error("the uploader went away");
      state.taken++;
      await new Promise((resolve) => setImmediate(resolve));
      yield Buffer.alloc(size, i);
    }
  })();
  return { state, chunks, length: count * size };
}

void test("request bodies: in memory or streamed at the node's pace; a failing source or a refusal cuts it; nothing is taken before the connection", async (t) => {
  const received: { path: string; bytes: number }[] = [];
  const { origin, connections } = await httpServer(t, (req, res) => {
    let bytes = 0;
    if (req.url === "/refuse") {
      // Answered before the body (as a node refuses a stale version) and the connection closed.
      res.writeHead(409, { "content-length": 2, connection: "close" });
      res.end("{}");
      return;
    }
    req.on("data", (d: Buffer) => (bytes += d.length));
    req.on("end", () => {
      received.push({ path: req.url ?? "", bytes });
      res.writeHead(201, { "content-length": 0 });
      res.end();
    });
    req.on("error", () => undefined);
  });
  const client = new LeanClient();
  t.after(() => client.close());
  const put = (path: string, body: Buffer | { length: number; chunks: AsyncIterable<Uint8Array> }) =>
    client.request({ method: "PUT", origin, path, body, timeoutMs: 5000, bufferBytes: 1024 });

  assert.equal((await put("/whole", Buffer.alloc(1000, 1))).status, 201);
  const streamed = chunkSource(64, 65536);
  assert.equal((await put("/streamed", streamed)).status, 201);
  assert.deepEqual(received, [
    { path: "/whole", bytes: 1000 },
    { path: "/streamed", bytes: 64 * 65536 },
  ]);
  assert.equal(connections(), 1, "both on one kept-alive connection");

  const refused = chunkSource(64, 65536);
  assert.equal((await put("/refuse", refused)).status, 409);
  assert.ok(refused.state.taken < 64, "the rest of the body was not sent after the answer");
  assert.equal((await put("/after", Buffer.from("x"))).status, 201, "the next request is fine");

  const failing = chunkSource(64, 65536, 10);
  await assert.rejects(put("/failing", failing), /uploader went away/);
  assert.ok(!received.some((r) => r.path === "/failing"), "the server never saw a whole body");

  const abort = new AbortController();
  const slow = (async function* () {
    yield Buffer.alloc(1000);
    abort.abort();
    await new Promise((resolve) => setTimeout(resolve, 50));
    yield Buffer.alloc(1000);
  })();
  await assert.rejects(
    client.request({
      method: "PUT",
      origin,
      path: "/aborted",
      body: { length: 2000, chunks: slow },
      timeoutMs: 5000,
      bufferBytes: 1024,
      signal: abort.signal,
    }),
    (err: unknown) => hasCode(err, "UPSTREAM_FAILED"),
  );

  // A node that refuses the connection: not a chunk was taken, so the body can go to another node whole.
  const closed = await httpServer(t, () => undefined);
  closed.server.close();
  closed.server.closeAllConnections();
  const refusedConnection = new LeanClient();
  t.after(() => refusedConnection.close());
  const source = chunkSource(4, 1000);
  await assert.rejects(
    refusedConnection.request({
      method: "PUT",
      origin: closed.origin,
      path: "/x",
      body: source,
      timeoutMs: 2000,
      bufferBytes: 1024,
    }),
    (err: unknown) => hasCode(err, "UPSTREAM_FAILED"),
  );
  assert.equal(source.state.taken, 0);
});
