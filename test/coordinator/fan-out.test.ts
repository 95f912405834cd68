import { test } from "node:test";
import assert from "node:assert/strict";
import { replicatorConfig } from "../../src/replicator/config.js";
import { ReplicatorService } from "../../src/replicator/service.js";
import { fromNode, nodeUrl, startFixture, type Fixture } from "./fixture.js";
import { waitFor } from "../helpers/wait.js";

interface Answer {
  status: number;
  json: Record<string, unknown>;
  queued: string | null;
}

async function put(
  url: string,
  key: string,
  body: Buffer | string | ReadableStream<Uint8Array>,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await fetch(`${url}/${key}`, {
    method: "PUT",
    body,
    headers,
    ...(body instanceof ReadableStream ? { duplex: "half" } : {}),
  });
  return {
    status: res.status,
    json: (await res.json()) as Record<string, unknown>,
    queued: res.headers.get("x-backpack-queued"),
  };
}

/** A body sent chunked (no Content-Length), in pieces of `piece` bytes. */
function chunked(bytes: Buffer, piece = 7000): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(c) {
      for (let o = 0; o < bytes.length; o += piece) c.enqueue(bytes.subarray(o, o + piece));
      c.close();
    },
  });
}

async function bytesOn(f: Fixture, id: string, key: string): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(`${nodeUrl(f, id)}/${key}`);
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

/** A replicator in this process, draining the fixture's queue (repair off: only queued copies). */
async function startReplicator(t: { after: (fn: () => Promise<void>) => void }, f: Fixture) {
  const r = new ReplicatorService(replicatorConfig({ port: 0, repairIntervalMs: 0, targetDownMinMs: 50 }), {
    map: f.map,
    queue: f.queue!,
  });
  await r.start();
  t.after(() => r.stop());
  return r;
}

void test("right after each 200, every node of the shard serves the bytes: small, streamed once, kept, and chunked bodies", async (t) => {
  // retain 64 KiB: bodies past it stream through once, fed to both nodes from one read of the client's body.
  const f = await startFixture(t, { config: { retainBytes: 64 * 1024 } });
  const sizes = [0, 1, 1024, 64 * 1024, 64 * 1024 + 1, 300_000, 3 * 1024 * 1024 + 17];
  const shards = f.map.snapshot().shards;
  await Promise.all(
    sizes.flatMap((size, i) =>
      [false, true].map(async (isChunked) => {
        const body = Buffer.alloc(size);
        for (let o = 0; o < size; o++) body[o] = (o * 31 + i) & 0xff;
        const key = `${isChunked ? "chunked" : "sized"}/${i}.bin`;
        const r = await put(f.url, key, isChunked ? chunked(body) : body);
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.equal(r.queued, null, "nothing handed off");
        const servers = shards[r.json.shard_id as string]!.servers;
        for (const id of servers) {
          const got = await bytesOn(f, id, key);
          assert.equal(got.status, 200, `${key} on node ${id}`);
          assert.ok(got.body.equals(body), `${key} on node ${id} byte for byte`);
        }
      }),
    ),
  );
  assert.equal((await f.queue!.stats()).depth, 0, "no copy task was queued");
});

void test("one replica down: 200 naming it in X-Backpack-Queued, and the copy lands once it is back; all down: 503", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, config: { retainBytes: 64 * 1024 } });
  await f.stopNode("2");
  const bodies = new Map<string, Buffer>();
  for (const size of [10, 100_000, 2_000_000]) {
    const key = `down/${size}`;
    const body = Buffer.alloc(size, size & 0xff);
    const r = await put(f.url, key, body);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.deepEqual(r.json, { shard_id: "1" });
    assert.equal(r.queued, "2", "the server that was down is named");
    assert.ok((await bytesOn(f, "1", key)).body.equals(body));
    bodies.set(key, body);
  }
  const leased = await f.queue!.lease(10, 1000, 0);
  assert.deepEqual(leased.map((l) => [l.task?.op, l.task?.target, l.task?.sources]).sort(), [
    ["copy", "2", ["1"]],
    ["copy", "2", ["1"]],
    ["copy", "2", ["1"]],
  ]);
  for (const l of leased) {
    assert.match(l.task?.version ?? "", /^\d{16}-[0-9a-f]{4}$/, "the handoff carries the write's version");
    await f.queue!.fail(l.id, "not yet", { retryAfterMs: 0, unreachable: true });
  }
  const metrics = await (await fetch(`${f.url}/metrics`)).text();
  assert.match(
    metrics,
    /backpack_coordinator_handoffs_total\{reason="(skipped|failed)",service="coordinator"\} \d/,
  );

  await f.startNode("2");
  await startReplicator(t, f);
  await waitFor(
    async () => {
      for (const [key, body] of bodies) if (!(await bytesOn(f, "2", key)).body.equals(body)) return false;
      return true;
    },
    { what: "the handed-off copies on node 2", timeoutMs: 30_000 },
  );

  await f.stopNode("1");
  await f.stopNode("2");
  const usage = f.map.snapshot().shards["1"]!.used;
  const none = await put(f.url, "nowhere.txt", "x");
  assert.equal(none.status, 503);
  assert.equal(none.json.code, "UNAVAILABLE");
  assert.equal((await f.queue!.stats()).depth, 0, "nothing queued for an upload stored nowhere");
  const stats = (await (await fetch(`${f.url}/stats`)).json()) as Record<string, number>;
  assert.equal(stats.failed_uploads, 1);
  await f.usageIs("1", usage);
});

void test("write quorum: fewer durable copies than asked is a 503 naming where the file is, and it is not taken back", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, config: { writeQuorum: 2 } });
  assert.equal((await put(f.url, "both.txt", "v1")).status, 200);
  await f.stopNode("2");
  const r = await put(f.url, "short.txt", "v1");
  assert.equal(r.status, 503);
  assert.equal(r.json.code, "UNAVAILABLE");
  assert.deepEqual([r.json.holding, r.json.queued], [["1"], ["2"]]);
  // Taking it back would need a tombstone newer than the upload, which would remove the version it replaced
  // on every replica: it stays where it was stored, and its copy is queued like a handoff.
  assert.deepEqual(await fromNode(f, "1", "short.txt"), { status: 200, body: "v1" });
  assert.equal((await f.queue!.stats()).depth, 1);
  // A shard of one node needs only that one.
  const g = await startFixture(t, { shards: { "1": ["1"] }, config: { writeQuorum: 2 } });
  assert.equal((await put(g.url, "single.txt", "x")).status, 200);
});

void test("the original's mode, per request and per coordinator: one node holds it, the others get queued copies", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2", "3"] } });
  const r = await put(f.url, "one.txt", "one", { "x-backpack-replicas": "one" });
  assert.equal(r.status, 200);
  const holders: string[] = [];
  for (const id of ["1", "2", "3"]) if ((await fromNode(f, id, "one.txt")).status === 200) holders.push(id);
  assert.equal(holders.length, 1);
  assert.deepEqual(
    r.queued?.split(",").sort(),
    ["1", "2", "3"].filter((id) => id !== holders[0]),
  );
  assert.equal((await f.queue!.stats()).depth, 2);

  const one = await startFixture(t, { shards: { "1": ["1", "2"] }, config: { replicas: "one" } });
  assert.equal((await put(one.url, "a.txt", "a")).status, 200);
  assert.equal((await one.queue!.stats()).depth, 1);
  // ... and a request can still ask for every live replica.
  const live = await put(one.url, "b.txt", "b", { "x-backpack-replicas": "live" });
  assert.equal(live.status, 200);
  for (const id of ["1", "2"]) assert.equal((await fromNode(one, id, "b.txt")).status, 200);

  const bad = await put(f.url, "c.txt", "c", { "x-backpack-replicas": "two" });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.code, "BAD_REQUEST");
  for (const id of ["1", "2", "3"]) assert.equal((await fromNode(f, id, "c.txt")).status, 404);
});

void test("replicas=all keeps its strict meaning: a node down is a 503 with the file stored and its copy queued", async (t) => {
  const f = await startFixture(t, { shards: { "1": ["1", "2"] } });
  await f.stopNode("2");
  const r = await put(f.url, "strict.txt", "s", { "x-backpack-replicas": "all" });
  assert.equal(r.status, 503);
  assert.deepEqual([r.json.holding, r.json.queued], [["1"], ["2"]]);
  await f.usageIs("1", 1);
});

void test("a handed-off copy that lands after a newer write or a delete of its file changes nothing (versions)", async (t) => {
  // suspectMs 1: node 2 is written to again as soon as it is back.
  const f = await startFixture(t, { shards: { "1": ["1", "2"] }, config: { suspectMs: 1 } });
  await f.stopNode("2");
  for (const key of ["overwritten.txt", "deleted.txt"]) {
    const r = await put(f.url, key, "v1");
    assert.equal(r.queued, "2", `${key} v1 is handed off to node 2`);
  }
  await f.startNode("2");
  const v2 = await put(f.url, "overwritten.txt", "v2");
  assert.deepEqual([v2.status, v2.queued], [200, null], "v2 is on both nodes");
  const del = await fetch(`${f.url}/1:deleted.txt`, { method: "DELETE" });
  assert.equal(del.status, 204);
  // Only now do the handoffs of v1 run: each is refused as older than what node 2 holds.
  const replicator = await startReplicator(t, f);
  await waitFor(async () => (await f.queue!.stats()).depth === 0, { what: "the handoffs done" });
  assert.deepEqual(await fromNode(f, "2", "overwritten.txt"), { status: 200, body: "v2" });
  assert.equal((await fromNode(f, "2", "deleted.txt")).status, 404);
  // (The replicator finds the newer state on the source and passes that on: node 2 holds it already.)
  const stats = await replicator.statsJson();
  assert.deepEqual([stats.copies, stats.deletes, stats.skipped + stats.superseded], [0, 0, 2]);
});
