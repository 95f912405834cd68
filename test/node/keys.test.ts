import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { test } from "node:test";
import { waitFor } from "../helpers/wait.js";
import { http, raw, startNode } from "./node-harness.js";

void test("every refused key form → 400 INVALID_KEY (or 400 from the parser), nothing stored", async (t) => {
  const node = await startNode(t);
  const refused = [
    "/", // empty key
    "/" + "k".repeat(1025), // over 1024 bytes
    "/" + "%C3%A9".repeat(513), // 1026 bytes of UTF-8
    "/a/../b",
    "/../etc/passwd",
    "/a/./b",
    "/.",
    "/a/%2e%2e/b",
    "/%2E",
    "/a%00b",
    "/a%0ab",
    "/a%7fb",
    "/%ff%fe", // invalid UTF-8, escaped
    "/%c3", // truncated UTF-8
    "/%ed%a0%80", // a UTF-8-encoded surrogate
    "/bad%zzescape",
    "/trailing%",
  ];
  for (const path of refused) {
    for (const method of ["PUT", "GET"]) {
      const res = await raw(
        node.url,
        `${method} ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\nconnection: close\r\n\r\nx`,
      );
      assert.equal(res.status, 400, `${method} ${path}: ${res.head}`);
      assert.equal((JSON.parse(res.body) as { code: string }).code, "INVALID_KEY", path);
    }
  }
  // Raw invalid UTF-8 bytes in the request line.
  const bytes = Buffer.concat([
    Buffer.from("PUT /a"),
    Buffer.from([0xc3, 0x28]),
    Buffer.from(" HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\n\r\nx"),
  ]);
  const res = await raw(node.url, bytes);
  assert.equal(res.status, 400);
  const exactly1024 = "k".repeat(1024);
  assert.equal((await http(node.url, "/" + exactly1024, { method: "PUT", body: "ok" })).status, 201);
  assert.equal((await http(node.url, "/" + exactly1024)).text, "ok");
  const stats = (await http(node.url, "/stats")).json() as { store: { objects: number } };
  assert.equal(stats.store.objects, 1, "only the valid key was stored");
});

void test("hostile request lines and headers are refused with a JSON 400/431 and the node stays up", async (t) => {
  const node = await startNode(t);
  const cases: Array<[string | Buffer, number]> = [
    ["GARBAGE\r\n\r\n", 400],
    ["GET /a HTTP/9.9\r\n\r\n", 400],
    ["GET /a\0b HTTP/1.1\r\nhost: x\r\n\r\n", 400],
    ["GET /a b HTTP/1.1\r\nhost: x\r\n\r\n", 400],
    ["PUT /a HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n", 400],
    ["PUT /a HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", 400],
    [`GET /a HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`, 431],
    [`GET /a HTTP/1.1\r\n${Array.from({ length: 3000 }, (_, i) => `h${i}: v`).join("\r\n")}\r\n\r\n`, 431],
  ];
  for (const [request, status] of cases) {
    const res = await raw(node.url, request);
    assert.equal(res.status, status, JSON.stringify(String(request).slice(0, 60)));
    const body = JSON.parse(res.body) as { code: string; error: string };
    assert.equal(typeof body.error, "string");
    assert.ok(["BAD_REQUEST", "HEADERS_TOO_LARGE"].includes(body.code));
  }
  assert.equal((await http(node.url, "/healthz")).status, 200);
});

void test("random garbage requests never crash the node or leave uploads reserved", async (t) => {
  const node = await startNode(t);
  const pieces = [
    "GET",
    "PUT",
    "DELETE",
    "HEAD",
    " ",
    "/",
    "%",
    "%0",
    "..",
    "\r\n",
    "\r\n\r\n",
    "\0",
    "\xff",
    "?",
    "content-length: 5",
    "content-length: -1",
    "transfer-encoding: chunked",
    "expect: 100-continue",
    "HTTP/1.1",
    "range: bytes=",
    "if-none-match: *",
    "a",
    "ffffffffffff\r\n",
    "0\r\n\r\n",
  ];
  const requests = Array.from({ length: 200 }, () => {
    let s = "";
    const n = 1 + randomInt(14);
    for (let i = 0; i < n; i++) s += pieces[randomInt(pieces.length)] as string;
    return Buffer.from(s, "latin1");
  });
  for (let i = 0; i < requests.length; i += 20) {
    // Each exchange ends when the node answers or closes; a request the node waits on (an unfinished
    // body) is cut by the client after its answer window.
    await Promise.all(
      requests.slice(i, i + 20).map((r) =>
        raw(node.url, r, (_write, end) => {
          setTimeout(end, 200).unref();
        }),
      ),
    );
  }
  assert.equal((await http(node.url, "/healthz")).status, 200);
  const stats = await waitFor(async () => {
    const s = (await http(node.url, "/stats")).json() as { inflight_uploads: number };
    return s.inflight_uploads === 0 ? s : undefined;
  });
  assert.equal(stats.inflight_uploads, 0);
});
