import assert from "node:assert/strict";
import { connect } from "node:net";
import { test } from "node:test";
import { waitFor } from "../helpers/wait.js";
import { raw } from "../node/node-harness.js";
import { nodeUrl, startFixture } from "./fixture.js";

/**
 * Odd or hostile requests to a coordinator: each gets an HTTP answer with the status and stable code the docs
 * give (docs/http-api.md, "Coordinator"), never a 500, a hang or a dropped connection.
 */

function codeOf(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { code?: string }).code;
  } catch {
    return undefined;
  }
}

async function answer(res: Response): Promise<{ status: number; code: string | undefined }> {
  const text = await res.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(text) as { code?: string }).code;
  } catch {
    code = undefined;
  }
  return { status: res.status, code };
}

void test("shard ids that name Object members (/__proto__:x, /constructor:x) are 404 NOT_FOUND, not 500", async (t) => {
  const f = await startFixture(t, {});
  for (const id of ["__proto__", "constructor", "toString", "hasOwnProperty"]) {
    for (const method of ["GET", "DELETE"]) {
      assert.deepEqual(await answer(await fetch(`${f.url}/${id}:x`, { method })), {
        status: 404,
        code: "NOT_FOUND",
      });
    }
    assert.equal((await fetch(`${f.url}/${id}:x`, { method: "HEAD" })).status, 404);
  }
});

void test("the bearer scheme is case-insensitive: `bearer` and `BEARER` are accepted by coordinators and nodes", async (t) => {
  const f = await startFixture(t, {
    shards: { "1": ["1", "2"] },
    config: { writeToken: "tok" },
    nodeToken: "ntok",
  });
  const put = (base: string, key: string, authorization: string | undefined): Promise<Response> =>
    fetch(`${base}/${key}`, {
      method: "PUT",
      body: "hi",
      headers: authorization === undefined ? {} : { authorization },
    });
  for (const [i, authorization] of ["Bearer tok", "bearer tok", "BEARER  tok"].entries()) {
    assert.equal((await put(f.url, `ok-${i}`, authorization)).status, 200, authorization);
  }
  assert.equal((await put(nodeUrl(f, "1"), "direct", "bearer ntok")).status, 201);
  assert.deepEqual(await answer(await put(f.url, "no", undefined)), { status: 401, code: "UNAUTHORIZED" });
  assert.deepEqual(await answer(await put(f.url, "no", "Basic dG9rOg==")), {
    status: 401,
    code: "UNAUTHORIZED",
  });
  assert.deepEqual(await answer(await put(f.url, "no", "bearer wrong")), { status: 403, code: "FORBIDDEN" });
  assert.deepEqual(
    await answer(
      await fetch(`${f.url}/1:ok-1`, { method: "DELETE", headers: { authorization: "bearer tok" } }),
    ),
    {
      status: 204,
      code: undefined,
    },
  );
});

const PAST_END = ["bytes=5-", "bytes=10-20", "bytes=99999999999999999999-", `bytes=${"9".repeat(300)}-`];

void test("a Range that starts at or past the end is 416 RANGE_NOT_SATISFIABLE from a node, also with a 20-digit start", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, config: { maxBacklog: 0 } });
  assert.equal(
    (
      await fetch(`${f.url}/r.txt`, {
        method: "PUT",
        body: "hello",
        headers: { "x-backpack-replicas": "all" },
      })
    ).status,
    200,
  );
  for (const range of PAST_END) {
    for (const id of ["1", "2"]) {
      const res = await fetch(`${nodeUrl(f, id)}/r.txt`, { headers: { range } });
      assert.equal(res.status, 416, `node ${id}, ${range}`);
      assert.equal(res.headers.get("content-range"), "bytes */5");
      assert.equal((await answer(res)).code, "RANGE_NOT_SATISFIABLE");
    }
  }
  const part = await fetch(`${nodeUrl(f, "1")}/r.txt`, { headers: { range: `bytes=1-${"9".repeat(30)}` } });
  assert.equal(part.status, 206);
  assert.equal(await part.text(), "ello");
});

void test("a Range that starts past the end is 416 through a coordinator", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  assert.equal((await fetch(`${f.url}/r.txt`, { method: "PUT", body: "hello" })).status, 200);
  for (const range of PAST_END) {
    const res = await fetch(`${f.url}/1:r.txt`, { headers: { range } });
    assert.equal(res.status, 416, range);
    assert.equal(res.headers.get("content-range"), "bytes */5");
  }
});

/** Writes raw bytes on a fresh connection and reads everything until the server closes it. */
function rawAll(base: string, bytes: string | Buffer): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    let text = "";
    socket.setEncoding("latin1").on("data", (d: string) => (text += d));
    socket.on("error", () => undefined);
    socket.on("close", () => resolve(text));
    socket.write(bytes);
  });
}

const statusesOf = (text: string): number[] =>
  [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));

void test("requests the HTTP parser refuses are answered 400, 431 or 408 with a JSON code, not dropped", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, config: { headersTimeoutMs: 300 } });
  const malformed = await raw(f.url, "GET /a b c HTTP/1.1\r\nhost: x\r\n\r\n");
  assert.equal(malformed.status, 400);
  assert.equal(codeOf(malformed.body), "BAD_REQUEST");
  assert.ok(malformed.closed);

  let big = "GET /1:x HTTP/1.1\r\nhost: x\r\n";
  for (let i = 0; i < 1100; i++) big += `x-test-header-${i}: value-${i}\r\n`;
  let many = "PUT /many HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n";
  for (let i = 0; i < 1500; i++) many += `a${i}:b\r\n`; // under 16 KiB, over 1000 fields
  for (const [base, what] of [
    [f.url, "coordinator"],
    [nodeUrl(f, "1"), "node"],
  ] as const) {
    for (const [name, request] of [
      ["over 16 KiB", `${big}\r\n`],
      ["over 1000 fields", `${many}\r\nhi`],
    ] as const) {
      const res = await raw(base, request);
      assert.equal(res.status, 431, `${what}: ${name}`);
      assert.equal(codeOf(res.body), "HEADERS_TOO_LARGE");
      assert.ok(res.closed);
    }
  }
  assert.equal((await fetch(`${f.url}/1:many`)).status, 404, "nothing stored");

  // Headers that never end: 408 after --headers-timeout (300 ms here; the check used to run every 30 s).
  const started = Date.now();
  const slow = await raw(f.url, "GET /1:x HTTP/1.1\r\nhost: x\r\n");
  assert.equal(slow.status, 408);
  assert.equal(codeOf(slow.body), "REQUEST_TIMEOUT");
  assert.ok(Date.now() - started < 10_000, "answered long before the 30 s check of the default interval");
});

void test("a valid PUT followed by garbage on the same connection gets its 200/201, then a 400 for the garbage", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  for (const [base, key, ok] of [
    [f.url, "piped", 200],
    [nodeUrl(f, "1"), "piped-node", 201],
  ] as const) {
    const text = await rawAll(
      base,
      `PUT /${key} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhiGARBAGE \u0000\r\n\r\n`,
    );
    assert.deepEqual(statusesOf(text), [ok, 400], `${base}: ${text}`);
    assert.match(text, /"code":"BAD_REQUEST"/);
  }
  assert.equal(await (await fetch(`${f.url}/1:piped`)).text(), "hi");
  assert.equal(await (await fetch(`${nodeUrl(f, "1")}/piped-node`)).text(), "hi");
});

void test("a Content-Type over 255 characters is 400 BAD_REQUEST at the coordinator, not a node failure (502)", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  const long = `text/plain; x=${"a".repeat(256 - 14)}`;
  assert.equal(long.length, 256);
  assert.deepEqual(
    await answer(
      await fetch(`${f.url}/typed`, { method: "PUT", body: "hi", headers: { "content-type": long } }),
    ),
    { status: 400, code: "BAD_REQUEST" },
  );
  assert.equal((await fetch(`${f.url}/1:typed`)).status, 404, "nothing stored");
  const stats = (await (await fetch(`${f.url}/stats`)).json()) as { suspect_servers: string[] };
  assert.deepEqual(stats.suspect_servers, [], "no node was blamed");
  const fits = long.slice(0, 255);
  const put = await fetch(`${f.url}/typed`, { method: "PUT", body: "hi", headers: { "content-type": fits } });
  assert.equal(put.status, 200);
  assert.equal((await fetch(`${f.url}/1:typed`)).headers.get("content-type"), fits);
});

void test("Expect: 100-continue: the coordinator says continue only once the token, key and size are checked", async (t) => {
  const f = await startFixture(t, {
    shards: { "1": ["1", "2"] },
    config: { writeToken: "tok", maxBodyBytes: 1000 },
  });
  const head = (headers: string): string =>
    `PUT /cont HTTP/1.1\r\nhost: x\r\n${headers}expect: 100-continue\r\n\r\n`;
  for (const [headers, status] of [
    ["content-length: 5\r\n", 401],
    ["authorization: Bearer wrong\r\ncontent-length: 5\r\n", 403],
    ["authorization: Bearer tok\r\ncontent-length: 5000\r\n", 413],
  ] as const) {
    const res = await raw(f.url, head(headers));
    assert.equal(res.status, status, headers);
    assert.ok(!res.head.includes("100 Continue"), `no 100 Continue before ${status}`);
  }
  const url = new URL(f.url);
  const socket = connect(Number(url.port), url.hostname);
  t.after(() => socket.destroy());
  let got = "";
  socket.setEncoding("latin1").on("data", (d: string) => (got += d));
  socket.write(head("authorization: Bearer tok\r\ncontent-length: 5\r\n"));
  await waitFor(() => got.includes("100 Continue"), { what: "100 Continue" });
  assert.ok(!got.includes("200 OK"));
  socket.write("hello");
  await waitFor(() => got.includes("200 OK"), { what: "200" });
  assert.equal(await (await fetch(`${f.url}/1:cont`)).text(), "hello");
});
