import assert from "node:assert/strict";
import { connect } from "node:net";
import { test } from "node:test";
import { waitFor } from "../helpers/wait.js";
import { http, raw, startNode } from "./node-harness.js";

interface Stats {
  refused: Record<string, number>;
  inflight_uploads: number;
  inflight_upload_bytes: number;
  store: { objects: number };
}

async function stats(url: string): Promise<Stats> {
  return (await http(url, "/stats")).json() as unknown as Stats;
}

function codeOf(body: string): string {
  return (JSON.parse(body) as { code: string }).code;
}

void test("a declared body over the limit → 413 before any byte is read (Expect: 100-continue gets no 100)", async (t) => {
  const node = await startNode(t, { maxBodyBytes: 1000 });
  let res = await raw(node.url, "PUT /big HTTP/1.1\r\nhost: x\r\ncontent-length: 1001\r\n\r\n");
  assert.equal(res.status, 413);
  assert.equal(codeOf(res.body), "BODY_TOO_LARGE");
  assert.ok(res.closed);
  res = await raw(
    node.url,
    "PUT /big HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\nexpect: 100-continue\r\n\r\n",
  );
  assert.equal(res.status, 413);
  assert.equal((await http(node.url, "/big")).status, 404);
  // Exactly at the limit is fine.
  assert.equal((await http(node.url, "/big", { method: "PUT", body: Buffer.alloc(1000, 1) })).status, 201);
});

void test("a chunked body over the limit → 413 while streaming, nothing stored", async (t) => {
  const node = await startNode(t, { maxBodyBytes: 100_000 });
  const chunk = Buffer.alloc(60_000, 7);
  const head = "PUT /chunky HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
  const frame = Buffer.concat([Buffer.from(chunk.length.toString(16) + "\r\n"), chunk, Buffer.from("\r\n")]);
  const res = await raw(node.url, Buffer.concat([Buffer.from(head), frame, frame]));
  assert.equal(res.status, 413);
  assert.equal(codeOf(res.body), "BODY_TOO_LARGE");
  assert.equal((await http(node.url, "/chunky")).status, 404);
  const s = await waitFor(async () => {
    const s = await stats(node.url);
    return s.inflight_uploads === 0 ? s : undefined;
  });
  assert.equal(s.inflight_upload_bytes, 0);
  assert.equal(s.refused.too_large, 1);
});

void test("Expect: 100-continue: the node says continue only to an admitted upload", async (t) => {
  const node = await startNode(t, { writeToken: "tok" });
  const url = new URL(node.url);
  const socket = connect(Number(url.port), url.hostname);
  t.after(() => socket.destroy());
  let got = "";
  socket.setEncoding("latin1").on("data", (d: string) => (got += d));
  socket.write(
    "PUT /cont HTTP/1.1\r\nhost: x\r\nauthorization: Bearer tok\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
  );
  await waitFor(() => got.includes("100 Continue"), { what: "100 Continue" });
  socket.write("hello");
  await waitFor(() => got.includes("201 Created"), { what: "201" });
  assert.equal((await http(node.url, "/cont")).text, "hello");
  const res = await raw(
    node.url,
    "PUT /cont2 HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
  );
  assert.equal(res.status, 401);
  assert.ok(!res.head.includes("100 Continue"));
});

void test("a client aborting mid-upload leaves nothing indexed, nothing reserved, the node up", async (t) => {
  const node = await startNode(t);
  const url = new URL(node.url);
  for (const [name, head, part] of [
    ["small", "content-length: 1000", Buffer.alloc(500, 1)],
    ["large", "content-length: 3000000", Buffer.alloc(1_000_000, 2)],
    [
      "chunked",
      "transfer-encoding: chunked",
      Buffer.concat([Buffer.from("f4240\r\n"), Buffer.alloc(500_000, 3)]),
    ],
  ] as const) {
    const socket = connect(Number(url.port), url.hostname);
    socket.write(`PUT /aborted-${name} HTTP/1.1\r\nhost: x\r\n${head}\r\n\r\n`);
    socket.write(part);
    await waitFor(async () => (await stats(node.url)).inflight_uploads === 1, {
      what: `${name} upload in flight`,
    });
    socket.destroy();
    await waitFor(async () => (await stats(node.url)).inflight_uploads === 0, {
      what: `${name} upload released`,
    });
    assert.equal((await http(node.url, `/aborted-${name}`)).status, 404, name);
  }
  const s = await stats(node.url);
  assert.equal(s.inflight_upload_bytes, 0);
  assert.equal(s.store.objects, 0);
  assert.ok((s.refused.aborted ?? 0) >= 3);
  assert.equal((await http(node.url, "/after", { method: "PUT", body: "alive" })).status, 201);
});

void test("slow clients: headers not sent in time → 408 and closed; a stalled body → 408, nothing stored", async (t) => {
  const node = await startNode(t, { headersTimeoutMs: 300, bodyTimeoutMs: 300 });
  const slowHeaders = await raw(node.url, "GET /a HTTP/1.1\r\nhost: x\r\n");
  assert.ok(slowHeaders.closed);
  if (slowHeaders.status !== undefined) assert.equal(slowHeaders.status, 408);
  for (const [name, length, sent] of [
    ["small", 100, 10],
    ["large", 500_000, 100_000],
  ] as const) {
    const res = await raw(
      node.url,
      Buffer.concat([
        Buffer.from(`PUT /slow-${name} HTTP/1.1\r\nhost: x\r\ncontent-length: ${length}\r\n\r\n`),
        Buffer.alloc(sent, 1),
      ]),
    );
    assert.equal(res.status, 408, name);
    assert.equal(codeOf(res.body), "REQUEST_TIMEOUT");
    assert.ok(res.closed);
    assert.equal((await http(node.url, `/slow-${name}`)).status, 404);
  }
  const s = await waitFor(async () => {
    const s = await stats(node.url);
    return s.inflight_uploads === 0 ? s : undefined;
  });
  assert.ok((s.refused.timeout ?? 0) >= 2);
});

void test("an upload answered before its body (412) is read to its end: the answer arrives, the connection stays", async (t) => {
  const node = await startNode(t, { bodyTimeoutMs: 300 });
  assert.equal((await http(node.url, "/exists", { method: "PUT", body: "v1" })).status, 201);
  const put = (length: number): string =>
    `PUT /exists HTTP/1.1\r\nhost: x\r\nif-none-match: *\r\ncontent-length: ${length}\r\n\r\n`;
  // A client that goes on sending its 3 MB body gets the 412 and can send the next request on the connection.
  const url = new URL(node.url);
  const socket = connect(Number(url.port), url.hostname);
  t.after(() => socket.destroy());
  let received = "";
  socket.on("data", (d: Buffer) => (received += d.toString("latin1")));
  socket.write(put(3_000_000));
  for (let sent = 0; sent < 3_000_000; sent += 100_000) socket.write(Buffer.alloc(100_000, 7));
  socket.write("GET /exists HTTP/1.1\r\nhost: x\r\n\r\n");
  await waitFor(() => received.includes("\r\n\r\nv1"), { what: "the 412, then the GET's answer" });
  assert.match(received, /^HTTP\/1\.1 412 /);
  assert.doesNotMatch(received, /connection: close/i);
  assert.ok(!socket.destroyed);
  // One that stops sending is cut off after the body timeout.
  const quiet = connect(Number(url.port), url.hostname);
  t.after(() => quiet.destroy());
  quiet.write(Buffer.concat([Buffer.from(put(1_000_000)), Buffer.alloc(1000)]));
  let quietText = "";
  quiet.on("data", (d: Buffer) => (quietText += d.toString("latin1")));
  const closed = new Promise<void>((resolve) => quiet.once("close", () => resolve()));
  await waitFor(() => quietText.startsWith("HTTP/1.1 412"), { what: "the 412" });
  await closed;
  // A longer body is not read: the connection closes after the answer.
  const long = await raw(node.url, put(5 * 1024 * 1024));
  assert.equal(long.status, 412);
  assert.match(long.head, /connection: close/i);
  assert.equal((await http(node.url, "/exists")).text, "v1");
});

void test("too many uploads or bytes in flight → 503 OVERLOADED with Retry-After, no queueing", async (t) => {
  const node = await startNode(t, { maxInflightUploads: 2, maxInflightBytes: 1000 });
  const url = new URL(node.url);
  const hold = (length: number, key: string): { socket: ReturnType<typeof connect>; got: () => string } => {
    const socket = connect(Number(url.port), url.hostname);
    let got = "";
    socket.setEncoding("latin1").on("data", (d: string) => (got += d));
    socket.write(`PUT /${key} HTTP/1.1\r\nhost: x\r\ncontent-length: ${length}\r\n\r\nab`);
    t.after(() => socket.destroy());
    return { socket, got: () => got };
  };
  const first = hold(600, "first");
  await waitFor(async () => (await stats(node.url)).inflight_uploads === 1);
  let res = await raw(node.url, "PUT /bytes HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n");
  assert.equal(res.status, 503, "bytes bound");
  assert.equal(codeOf(res.body), "OVERLOADED");
  assert.match(res.head, /\r\nretry-after: 1/i);
  const second = hold(300, "second");
  await waitFor(async () => (await stats(node.url)).inflight_uploads === 2);
  res = await raw(node.url, "PUT /count HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\n");
  assert.equal(res.status, 503, "count bound");
  // Reads are never refused by upload admission.
  assert.equal((await http(node.url, "/healthz")).status, 200);
  first.socket.write(Buffer.alloc(598, 1));
  second.socket.write(Buffer.alloc(298, 1));
  await waitFor(() => first.got().includes("201") && second.got().includes("201"), { what: "both stored" });
  assert.equal((await http(node.url, "/first")).body.length, 600);
  const s = await stats(node.url);
  assert.equal(s.inflight_uploads, 0);
  assert.equal(s.refused.overloaded, 2);
});

void test("stop() lets an in-flight upload finish, answers 503 SHUTTING_DOWN to what comes after", async (t) => {
  const node = await startNode(t);
  const url = new URL(node.url);
  const socket = connect(Number(url.port), url.hostname);
  t.after(() => socket.destroy());
  let got = "";
  socket.setEncoding("latin1").on("data", (d: string) => (got += d));
  const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()));
  socket.write("PUT /draining HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n01234");
  await waitFor(async () => (await stats(node.url)).inflight_uploads === 1);
  const stopping = node.stop();
  // The rest of the body, then a pipelined request on the same connection.
  socket.write("56789GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n");
  await closed;
  await stopping;
  assert.match(got, /^HTTP\/1\.1 201/);
  assert.match(got, /HTTP\/1\.1 503[^]*"code":"SHUTTING_DOWN"/);
  // The upload was stored durably: a new node on the same dir has it.
  const again = await startNode(t, { dataDir: node.config.dataDir });
  assert.equal((await http(again.url, "/draining")).text, "0123456789");
});
