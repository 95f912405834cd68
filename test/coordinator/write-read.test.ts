import { test } from "node:test";
import assert from "node:assert/strict";
import { checksum, formatChecksum } from "../../src/common/checksum.js";
import { fromNode, nodeUrl, startFixture } from "./fixture.js";
import { waitFor } from "../helpers/wait.js";
import { request } from "node:http";

/** A request with the target sent as given (no URL normalisation). */
function rawRequest(
  base: string,
  method: string,
  path: string,
  body: string,
  headers: Record<string, string>,
) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request(`${base}${path}`, { method, headers, path }, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function put(url: string, key: string, body: string | Buffer, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/${key}`, { method: "PUT", body, headers });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

void test("PUT answers the shard id as a string; the file is on every node of its shard at once, nothing queued", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  const r = await put(f.url, "hello.txt", "hello, backpack!\n");
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { shard_id: "1" });

  const get = await fetch(`${f.url}/1:hello.txt`);
  assert.equal(get.status, 200);
  assert.equal(await get.text(), "hello, backpack!\n");
  const etag = get.headers.get("etag");
  assert.ok(etag);
  assert.match(get.headers.get("x-backpack-checksum") ?? "", /^[0-9a-f]{8}$/);

  const head = await fetch(`${f.url}/1:hello.txt`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), "17");

  const range = await fetch(`${f.url}/1:hello.txt`, { headers: { range: "bytes=0-4" } });
  assert.equal(range.status, 206);
  assert.equal(await range.text(), "hello");
  const cond = await fetch(`${f.url}/1:hello.txt`, { headers: { "if-none-match": etag } });
  assert.equal(cond.status, 304);

  // Both nodes hold it, and nothing was queued.
  for (const id of ["1", "2"]) {
    assert.deepEqual(await fromNode(f, id, "hello.txt"), { status: 200, body: "hello, backpack!\n" });
  }
  assert.equal((await f.queue!.stats()).depth, 0);

  await f.usageIs("1", 17);
  const stats = (await (await fetch(`${f.url}/stats`)).json()) as Record<string, unknown>;
  for (const k of [
    "uptime",
    "processed_uploads",
    "processed_bytes",
    "failed_uploads",
    "total_size",
    "used_size",
    "usage_ratio",
    "available_space",
    "total_shards",
    "writable_shards",
    "queue_length",
  ]) {
    assert.ok(k in stats, `stats has ${k}`);
  }
  assert.equal(stats.processed_uploads, 1);
  assert.equal(stats.processed_bytes, 17);
  assert.equal(stats.failed_uploads, 0);
  assert.equal(stats.used_size, 17);
  assert.equal(stats.total_shards, 1);
  assert.equal(stats.writable_shards, 1);
  assert.equal(stats.queue_length, 0);
  const metrics = await (await fetch(`${f.url}/metrics`)).text();
  assert.match(metrics, /backpack_coordinator_uploads_total\{result="ok",service="coordinator"\} 1/);
  assert.equal((await fetch(`${f.url}/healthz`)).status, 200);
});

void test("replicas=all (header or query) answers once every server holds the file; the query is not the key", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2", "3"] } });
  const a = await put(f.url, "a.bin?replicas=all", "AAAA");
  assert.equal(a.status, 200);
  assert.equal(a.json.shard_id, "1");
  assert.deepEqual([...(a.json.replicas as string[])].sort(), ["1", "2", "3"]);
  const b = await put(f.url, "b.bin", "BBBB", { "x-backpack-replicas": "all" });
  assert.equal(b.status, 200);
  for (const id of ["1", "2", "3"]) {
    assert.deepEqual(await fromNode(f, id, "a.bin"), { status: 200, body: "AAAA" });
    assert.deepEqual(await fromNode(f, id, "b.bin"), { status: 200, body: "BBBB" });
  }
  assert.equal((await f.queue!.stats()).depth, 0);
});

void test("reads fail over: a stopped node, a node without the file; 404 only when no node has it", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  assert.equal((await put(f.url, "both.txt", "both", { "x-backpack-replicas": "all" })).status, 200);
  assert.equal((await put(f.url, "one.txt", "one", { "x-backpack-replicas": "one" })).status, 200);
  const holder = (await fromNode(f, "1", "one.txt")).status === 200 ? "1" : "2";
  const other = holder === "1" ? "2" : "1";

  // The node without the copy answers 404: the read goes on to the holder, every time.
  for (let i = 0; i < 10; i++) {
    const r = await fetch(`${f.url}/1:one.txt`);
    assert.equal(r.status, 200);
    assert.equal(await r.text(), "one");
  }
  const missing = await fetch(`${f.url}/1:nothing.txt`);
  assert.equal(missing.status, 404);
  assert.equal(((await missing.json()) as { code: string }).code, "NOT_FOUND");
  assert.equal((await fetch(`${f.url}/9:one.txt`)).status, 404);

  await f.stopNode(other);
  for (let i = 0; i < 5; i++) assert.equal(await (await fetch(`${f.url}/1:both.txt`)).text(), "both");
  // One node down, the other says 404: the file may be on the down one, so not a 404.
  const unsure = await fetch(`${f.url}/1:nothing.txt`);
  assert.equal(unsure.status, 503);
  await f.stopNode(holder);
  const none = await fetch(`${f.url}/1:both.txt`);
  assert.equal(none.status, 503);
  assert.equal(((await none.json()) as { code: string }).code, "UNAVAILABLE");
  await f.startNode(holder);
  assert.equal(await (await fetch(`${f.url}/1:both.txt`)).text(), "both");
});

void test("an upload goes to the next node when the first one is down; a large streamed body too", async (t) => {
  // Node order fixed to 1, 2: the first upload must meet the stopped node and go on to the next.
  const f = await startFixture(t, {
    shards: { "1": ["1", "2"] },
    config: { retainBytes: 1000 },
    random: () => 0.99,
  });
  await f.stopNode("1");
  const big = Buffer.alloc(200_000, 7);
  for (let i = 0; i < 6; i++) {
    const body = i % 2 === 0 ? `small ${i}` : big;
    const r = await put(f.url, `k${i}`, body);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const got = await fromNode(f, "2", `k${i}`);
    assert.equal(got.status, 200);
  }
  const stats = (await (await fetch(`${f.url}/stats`)).json()) as { suspect_servers: string[] };
  assert.deepEqual(stats.suspect_servers, ["1"]);
  // Copies for the down node are queued, not lost.
  assert.equal((await f.queue!.stats()).depth, 6);
});

void test("chunked uploads: stored with their real size and counted once, also past the memory bound", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, config: { retainBytes: 64 * 1024 } });
  const sizes = [0, 10, 100_000, 300_000];
  let total = 0;
  for (const [i, size] of sizes.entries()) {
    const bytes = Buffer.alloc(size, i + 1);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let o = 0; o < size; o += 7000) c.enqueue(bytes.subarray(o, o + 7000));
        c.close();
      },
    });
    const res = await fetch(`${f.url}/chunked-${i}`, {
      method: "PUT",
      body: stream,
      duplex: "half",
    });
    assert.equal(res.status, 200, await res.text());
    total += size;
    const back = Buffer.from(await (await fetch(`${f.url}/1:chunked-${i}`)).arrayBuffer());
    assert.ok(back.equals(bytes), `chunked-${i} reads back`);
  }
  await f.usageIs("1", total);
});

void test("refusals before a byte reaches a node: bad keys, oversized bodies, tokens, methods", async (t) => {
  const f = await startFixture(t, {
    shards: { "1": ["1", "2"] },
    config: { maxBodyBytes: 1000, writeToken: "client-secret" },
    nodeToken: "node-secret",
  });
  const auth = { authorization: "Bearer client-secret" };
  const code = async (res: Response) => ((await res.json()) as { code: string }).code;

  let res = await fetch(`${f.url}/x`, { method: "PUT", body: "x" });
  assert.equal(res.status, 401);
  assert.equal(await code(res), "UNAUTHORIZED");
  res = await fetch(`${f.url}/x`, { method: "PUT", body: "x", headers: { authorization: "Bearer nope" } });
  assert.equal(res.status, 403);
  // Sent as raw request targets: fetch would normalise the dot segments away.
  for (const bad of ["/a/../b", "/a/%2e%2e/b", "/%ff", "/a%00b", "/" + "x".repeat(1100)]) {
    const raw = await rawRequest(f.url, "PUT", bad, "x", auth);
    assert.equal(raw.status, 400, bad);
    assert.equal((JSON.parse(raw.body) as { code: string }).code, "INVALID_KEY");
  }
  res = await fetch(`${f.url}/big`, { method: "PUT", body: Buffer.alloc(1001), headers: auth });
  assert.equal(res.status, 413);
  assert.equal(await code(res), "BODY_TOO_LARGE");
  const chunked = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < 5; i++) c.enqueue(new Uint8Array(300));
      c.close();
    },
  });
  res = await fetch(`${f.url}/big2`, {
    method: "PUT",
    body: chunked,
    duplex: "half",
    headers: auth,
  });
  assert.equal(res.status, 413);
  res = await fetch(`${f.url}/x`, { method: "POST", body: "x" });
  assert.equal(res.status, 405);
  res = await fetch(`${f.url}/1:x`, { method: "DELETE" });
  assert.equal(res.status, 401);
  res = await fetch(`${f.url}/no-colon`);
  assert.equal(res.status, 400);

  // With the right tokens (client → coordinator, coordinator → node) it goes through.
  res = await fetch(`${f.url}/ok`, { method: "PUT", body: "fine", headers: auth });
  assert.equal(res.status, 200);
  const stats = (await (await fetch(`${f.url}/stats`)).json()) as Record<string, number>;
  assert.equal(stats.processed_uploads, 1);
  for (const id of ["1", "2"]) {
    const s = (await (await fetch(`${f.nodes.get(id)!.url}/stats`)).json()) as { puts: { count: number } };
    assert.ok(s.puts.count <= 1, "no refused upload reached a node");
  }
});

void test("no enabled shard → 507 NO_WRITABLE_SHARDS; larger than any shard → 507 NO_SPACE", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, enable: false, capacity: 100 });
  let res = await fetch(`${f.url}/x`, { method: "PUT", body: "x" });
  assert.equal(res.status, 507);
  assert.deepEqual(await res.json(), { error: "No writable shards found!", code: "NO_WRITABLE_SHARDS" });
  await f.map.setShardEnabled("1", true);
  await waitFor(() => f.map.snapshot().shards["1"]?.enabled);
  res = await fetch(`${f.url}/x`, { method: "PUT", body: Buffer.alloc(101) });
  assert.equal(res.status, 507);
  assert.equal(((await res.json()) as { code: string }).code, "NO_SPACE");
  res = await fetch(`${f.url}/x`, { method: "PUT", body: Buffer.alloc(100) });
  assert.equal(res.status, 200);
});

void test("a shard that fills up stops taking uploads before it overflows, also under concurrency", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, capacity: 10 * 1024 });
  const results = await Promise.all(
    Array.from({ length: 30 }, (_, i) =>
      fetch(`${f.url}/fill-${i}`, { method: "PUT", body: Buffer.alloc(1024, i) }).then((r) => r.status),
    ),
  );
  const ok = results.filter((s) => s === 200).length;
  assert.equal(ok, 10, `statuses: ${results.join(",")}`);
  assert.equal(results.filter((s) => s === 507).length, 20);
  await f.usageIs("1", 10 * 1024);
  const stats = (await (await fetch(`${f.url}/stats`)).json()) as Record<string, number>;
  assert.equal(stats.writable_shards, 0);
  assert.equal(stats.available_space, 0);
});

void test("no queue: a copy that can be neither made nor queued is a 503 naming where it is; the one mode copies directly", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, queue: false });
  const r = await put(f.url, "direct.txt", "direct");
  assert.equal(r.status, 200);
  const one = await put(f.url, "one.txt", "direct", { "x-backpack-replicas": "one" });
  assert.equal(one.status, 200);
  for (const id of ["1", "2"]) {
    assert.deepEqual(await fromNode(f, id, "direct.txt"), { status: 200, body: "direct" });
    assert.deepEqual(await fromNode(f, id, "one.txt"), { status: 200, body: "direct" });
  }
  await f.usageIs("1", 12);
  await f.stopNode("2");
  const refused = await put(f.url, "unsafe.txt", "unsafe");
  assert.equal(refused.status, 503);
  assert.equal(refused.json.code, "UNAVAILABLE");
  assert.deepEqual([refused.json.holding, refused.json.missing], [["1"], ["2"]]);
  // Not taken back from node 1 (a delete would also take the version it replaced), and counted there.
  assert.deepEqual(await fromNode(f, "1", "unsafe.txt"), { status: 200, body: "unsafe" });
  const stats = (await (await fetch(`${f.url}/stats`)).json()) as Record<string, number>;
  assert.equal(stats.failed_uploads, 1);
  await f.usageIs("1", 18);
});

void test("DELETE removes the file from every node, and queues a delete for a node that is down", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  assert.equal((await put(f.url, "d.txt", "12345", { "x-backpack-replicas": "all" })).status, 200);
  await f.usageIs("1", 5);
  let res = await fetch(`${f.url}/1:d.txt`, { method: "DELETE" });
  assert.equal(res.status, 204);
  for (const id of ["1", "2"]) assert.equal((await fromNode(f, id, "d.txt")).status, 404);
  await f.usageIs("1", 0);
  res = await fetch(`${f.url}/1:d.txt`, { method: "DELETE" });
  assert.equal(res.status, 404);
  const answered = (await res.json()) as { servers: unknown; attempts: number };
  assert.deepEqual(
    answered.servers,
    { "1": "absent", "2": "absent" },
    "the 404 says what each node answered",
  );
  assert.equal(answered.attempts, 1);

  assert.equal((await put(f.url, "e.txt", "abc", { "x-backpack-replicas": "all" })).status, 200);
  await f.stopNode("2");
  res = await fetch(`${f.url}/1:e.txt`, { method: "DELETE" });
  assert.equal(res.status, 204);
  assert.equal(res.headers.get("x-backpack-queued"), "2");
  const leased = await f.queue!.lease(10, 1000, 0);
  assert.deepEqual(
    leased.map((l) => [l.task?.op, l.task?.target, l.task?.key]),
    [["delete", "2", "e.txt"]],
  );
});

void test("a node refusing the coordinator's token is a 502, not a node failure; reserved keys are refused", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, nodeToken: "node-secret" });
  // The coordinator is given a wrong node token: every node refuses the upload with 403.
  const wrong = new (await import("../../src/coordinator/service.js")).CoordinatorService(
    (await import("../../src/coordinator/config.js")).coordinatorConfig({ port: 0, nodeToken: "not-it" }),
    { clusterMap: f.map, queue: f.queue },
  );
  await wrong.start();
  t.after(() => wrong.stop());
  const res = await fetch(`${wrong.url}/x`, { method: "PUT", body: "x" });
  assert.equal(res.status, 502);
  assert.equal(((await res.json()) as { code: string }).code, "UPSTREAM_FAILED");
  const stats = await wrong.stats();
  assert.deepEqual(stats.suspect_servers, [], "a refusal is not a failure of the node");
  for (const key of ["stats", "metrics", "healthz", "cluster"]) {
    const r = await fetch(`${f.url}/${key}`, { method: "PUT", body: "x" });
    assert.equal(r.status, 405, key);
  }
});

void test("a large body (not kept in memory) still goes to the next node when the first refuses the connection", async (t) => {
  // suspectMs 1: the stopped node is never skipped as suspect, so about half the uploads try it first.
  const f = await startFixture(t, {
    shards: { "1": ["1", "2"] },
    config: { retainBytes: 1000, suspectMs: 1 },
  });
  await f.stopNode("1");
  for (let i = 0; i < 8; i++) {
    const body = Buffer.alloc(300_000 + i, i);
    const r = await put(f.url, `large-${i}`, body);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const back = Buffer.from(await (await fetch(`${f.url}/1:large-${i}`)).arrayBuffer());
    assert.ok(back.equals(body));
  }
});

void test("uploads in the one mode wait while more copies than --max-backlog are due, and go on once the replicators catch up", async (t) => {
  const f = await startFixture(t, {
    shards: { "1": ["1", "2"] },
    config: { maxBacklog: 2, replicas: "one" },
  });
  for (const i of [1, 2, 3]) assert.equal((await put(f.url, `b${i}.txt`, "x")).status, 200);
  const queue = f.queue;
  assert.ok(queue);
  assert.equal((await queue.stats()).due, 3, "three copies due, no replicator running");
  // The coordinator reads the backlog every 100 ms: let its last reading (taken before these uploads) age.
  await new Promise((resolve) => setTimeout(resolve, 150));
  let drained = false;
  const held = put(f.url, "b4.txt", "x").then((r) => ({ ...r, afterDrain: drained }));
  await new Promise((resolve) => setTimeout(resolve, 300));
  // A replicator's work: lease and acknowledge the due copies.
  const leased = await queue.lease(10, 30_000);
  drained = true;
  await queue.ack(leased.map((l) => l.id));
  const r = await held;
  assert.equal(r.status, 200);
  assert.ok(r.afterDrain, "the upload was held until the backlog shrank");
  const stats = (await (await fetch(`${f.url}/stats`)).json()) as Record<string, number>;
  assert.equal(stats.throttled_uploads, 1);
  assert.equal(stats.processed_uploads, 4);
});

void test("an upload whose body does not match its X-Backpack-Checksum is refused, small or streamed, and nothing is stored", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  const small = Buffer.from("checked end to end\n");
  const large = Buffer.alloc(300_000, 7); // streamed through, not held whole first
  for (const [key, body] of [
    ["small.txt", small],
    ["large.bin", large],
  ] as const) {
    const wrong = formatChecksum((checksum(body) ^ 1) >>> 0);
    const r = await put(f.url, key, body, { "x-backpack-checksum": wrong });
    assert.equal(r.status, 502, key);
    assert.equal(r.json.code, "CHECKSUM_MISMATCH", key);
    for (const id of ["1", "2"])
      assert.equal((await fromNode(f, id, key)).status, 404, `${key} on node ${id}`);
    const ok = await put(f.url, key, body, { "x-backpack-checksum": formatChecksum(checksum(body)) });
    assert.equal(ok.status, 200, key);
  }
  const bad = await put(f.url, "bad.txt", small, { "x-backpack-checksum": "not-hex" });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.code, "BAD_CHECKSUM_HEADER");
  const stats = (await (await fetch(`${f.url}/stats`)).json()) as { suspect_servers?: string[] };
  assert.deepEqual(stats.suspect_servers ?? [], [], "a client's wrong checksum is not a node failure");
});

void test("a delete retried past a newer delete on one node still answers 204 for the node it removed the file from", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  assert.equal((await put(f.url, "skewed.txt", "v1", { "x-backpack-replicas": "all" })).status, 200);
  // Node 2 already holds a delete stamped an hour ahead (a coordinator whose clock ran ahead): the first
  // attempt removes the file from node 1 and is refused by node 2; the retry, stamped past it, finds the file
  // on neither: the answer is still 204, not 404.
  const ahead = `${String((Date.now() + 3_600_000) * 1000).padStart(16, "0")}-0001`;
  const res = await fetch(`${nodeUrl(f, "2")}/skewed.txt`, {
    method: "DELETE",
    headers: { "x-backpack-version": ahead },
  });
  assert.equal(res.status, 204);
  const del = await fetch(`${f.url}/1:skewed.txt`, { method: "DELETE" });
  assert.equal(del.status, 204);
  assert.ok(
    (del.headers.get("x-backpack-version") ?? "") > ahead,
    "the delete was stamped past the newer one",
  );
  for (const id of ["1", "2"]) assert.equal((await fromNode(f, id, "skewed.txt")).status, 404);
});
