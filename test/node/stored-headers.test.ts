import { test } from "node:test";
import assert from "node:assert/strict";
import { Agent } from "undici";
import { NodeClient } from "../../src/client/node-client.js";
import { pageSummary } from "../../src/common/page-summary.js";
import { tempDir } from "../helpers/tmp.js";
import { http, startNode } from "./node-harness.js";

const STORED = {
  "cache-control": "max-age=3600",
  "content-disposition": "inline",
  "content-encoding": "identity",
  "content-language": "de-CH",
  expires: "Wed, 21 Oct 2037 07:28:00 GMT",
  "x-backpack-meta-s3-etag": '"9e107d9d372bb6826bd81d3542a419d6"',
};

void test("a node stores a PUT's headers and answers them on GET and HEAD, across a restart", async (t) => {
  const dir = await tempDir(t, "backpack-node-");
  let node = await startNode(t, { dataDir: dir });
  const put = await http(node.url, "/doc.txt", {
    method: "PUT",
    body: "hello",
    headers: {
      ...STORED,
      "content-type": "text/plain",
      "X-Backpack-Meta-Color": "Blue",
      "x-other": "not kept",
    },
  });
  assert.equal(put.status, 201);
  const check = async (): Promise<void> => {
    for (const method of ["GET", "HEAD"] as const) {
      const res = await http(node.url, "/doc.txt", { method });
      assert.equal(res.status, 200);
      for (const [name, value] of Object.entries(STORED))
        assert.equal(res.headers[name], value, `${method} ${name}`);
      assert.equal(res.headers["x-backpack-meta-color"], "Blue");
      assert.equal(res.headers["x-other"], undefined);
      assert.equal(res.headers["content-type"], "text/plain");
    }
    // A range answers them too.
    const part = await http(node.url, "/doc.txt", { headers: { range: "bytes=1-2" } });
    assert.equal(part.status, 206);
    assert.equal(part.text, "el");
    assert.equal(part.headers["cache-control"], "max-age=3600");
  };
  await check();
  await node.stop();
  node = await startNode(t, { dataDir: dir });
  await check();
});

void test("a node refuses stored headers over 8 KiB (431 HEADERS_TOO_LARGE) and keeps what it held", async (t) => {
  const node = await startNode(t);
  assert.equal((await http(node.url, "/k", { method: "PUT", body: "old" })).status, 201);
  const big = await http(node.url, "/k", {
    method: "PUT",
    body: "new",
    headers: { "x-backpack-meta-a": "x".repeat(5000), "x-backpack-meta-b": "y".repeat(5000) },
  });
  assert.equal(big.status, 431);
  assert.equal(big.json().code, "HEADERS_TOO_LARGE");
  const res = await http(node.url, "/k");
  assert.equal(res.text, "old");
  assert.equal(res.headers["x-backpack-meta-a"], undefined);
});

void test("batched writes carry stored headers", async (t) => {
  const node = await startNode(t);
  const agent = new Agent();
  t.after(() => agent.close());
  const client = new NodeClient(agent, { batch: true });
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      client.put(node.url, `b/${i}`, Buffer.from(`body ${i}`), {
        headers: i % 2 === 0 ? { "x-backpack-meta-n": String(i) } : undefined,
      }),
    ),
  );
  for (let i = 0; i < 20; i++) {
    const res = await http(node.url, `/b/${i}`);
    assert.equal(res.text, `body ${i}`);
    assert.equal(res.headers["x-backpack-meta-n"], i % 2 === 0 ? String(i) : undefined);
  }
});

void test("GET /_backpack/keys lists keys in order by prefix and after, with deletes, or a page's summary; bad limits are refused", async (t) => {
  const node = await startNode(t);
  for (const k of ["p/a", "p/b", "p/c", "q/a"]) {
    await http(node.url, `/${k}`, {
      method: "PUT",
      body: k,
      headers: { "content-type": "text/x", "x-backpack-meta-k": k },
    });
  }
  assert.equal((await http(node.url, "/p/b", { method: "DELETE" })).status, 204);
  const agent = new Agent();
  t.after(() => agent.close());
  const client = new NodeClient(agent);
  const all = await client.listKeys(node.url, { prefix: "p/" });
  assert.deepEqual(
    all.entries.map((e) => [e.key, e.deleted === true]),
    [
      ["p/a", false],
      ["p/b", true],
      ["p/c", false],
    ],
  );
  assert.equal(all.entries[0]?.contentType, "text/x");
  assert.deepEqual(all.entries[0]?.headers, { "x-backpack-meta-k": "p/a" });
  assert.match(all.entries[0]?.version ?? "", /^\d{16}-[0-9a-f]{4}$/);
  const page = await client.listKeys(node.url, { prefix: "p/", after: "p/a", limit: 1 });
  assert.deepEqual(
    page.entries.map((e) => e.key),
    ["p/b"],
  );
  assert.equal(page.more, true);
  // The summary of a page: what the page lists, hashed; a newer version of one key changes it.
  const summary = await client.listKeysSummary(node.url, { prefix: "p/" });
  assert.deepEqual(summary, {
    more: false,
    count: 3,
    last: "p/c",
    summary: pageSummary(all.entries),
  });
  assert.match(summary.summary, /^[0-9a-f]{32}$/);
  assert.deepEqual(await client.listKeysSummary(node.url, { prefix: "p/", after: "p/a", limit: 1 }), {
    more: true,
    count: 1,
    last: "p/b",
    summary: pageSummary(page.entries),
  });
  assert.deepEqual(await client.listKeysSummary(node.url, { prefix: "none/" }), {
    more: false,
    count: 0,
    last: undefined,
    summary: pageSummary([]),
  });
  await http(node.url, "/p/c", { method: "PUT", body: "newer" });
  assert.notEqual((await client.listKeysSummary(node.url, { prefix: "p/" })).summary, summary.summary);
  for (const limit of ["0", "abc", "10001"]) {
    const res = await http(node.url, `/_backpack/keys?limit=${limit}`);
    assert.equal(res.status, 400, `limit=${limit}`);
    assert.equal(res.json().code, "BAD_REQUEST");
  }
});
