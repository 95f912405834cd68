import assert from "node:assert/strict";
import { after, test } from "node:test";
import { request } from "undici";
import { Redis } from "ioredis";
import type { ClusterMap } from "../../src/cluster/types.js";
import { silentLogger } from "../../src/common/logger.js";
import { openQueue } from "../../src/queue/open.js";
import type { ReplicationQueue } from "../../src/queue/types.js";
import { replicatorConfig } from "../../src/replicator/config.js";
import { ReplicatorService } from "../../src/replicator/service.js";
import { startRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";
import {
  clusterMap,
  copyTask,
  corruptOnDisk,
  crcOn,
  put,
  randomBody,
  startNodes,
  type TestNode,
} from "./fixture.js";

// Shared by the tests of this file: one Redis, three real nodes, one map (shard 1 on all three), one queue
// and one replicator. Each test uses its own keys.
const hooks = { after };
const redis = await startRedis(hooks);
const nodes: TestNode[] = await startNodes(hooks, 3);
const settings = { key: "repl-test", servers: [redis.endpoint] };
const { map }: { map: ClusterMap } = await clusterMap(hooks, nodes, { "1": ["1", "2", "3"] }, settings);
const queue: ReplicationQueue = await openQueue({ settings }, { backoffBaseMs: 50, backoffMaxMs: 200 });
after(() => queue.stop());
const replicator = new ReplicatorService(
  replicatorConfig({
    concurrency: 8,
    perTargetConcurrency: 4,
    leaseMs: 5000,
    targetDownMinMs: 100,
    targetDownMaxMs: 500,
  }),
  { map, queue, log: silentLogger },
);
await replicator.start();
after(() => replicator.stop());

const [n1, n2, n3] = nodes as [TestNode, TestNode, TestNode];

async function stats(): Promise<
  Record<string, unknown> & { copies: number; skipped: number; superseded: number; deadLettered: number }
> {
  const res = await request(`${replicator.url}/stats`);
  return (await res.body.json()) as never;
}

async function drained(): Promise<boolean> {
  const s = await queue.stats();
  return s.depth === 0;
}

void test("copies a file to the target, verified; a second task for it is skipped", async () => {
  const body = randomBody(1_500_000);
  const crc = await put(n1.url, "a/one.bin", body);
  const before = await stats();
  await queue.push([copyTask("a/one.bin", crc, body.length, ["1"], "2")]);
  await waitFor(async () => (await crcOn(n2.url, "a/one.bin")) === crc, { what: "copy on node 2" });
  await waitFor(drained, { what: "queue drained" });
  assert.equal((await stats()).copies, before.copies + 1);
  await queue.push([copyTask("a/one.bin", crc, body.length, ["1"], "2")]);
  await waitFor(async () => (await stats()).skipped === before.skipped + 1, { what: "skipped" });
  const res = await request(`${n2.url}/a/one.bin`);
  assert.deepEqual(Buffer.from(await res.body.arrayBuffer()), body);
  // Over 4 MiB the node answers the second copy's conditional PUT without reading the body and closes the
  // connection; whether the replicator reads the 412 or sees a reset, the task ends as skipped.
  const large = randomBody(6_000_000);
  const largeCrc = await put(n1.url, "a/large.bin", large);
  await queue.push([copyTask("a/large.bin", largeCrc, large.length, ["1"], "3")]);
  await waitFor(async () => (await crcOn(n3.url, "a/large.bin")) === largeCrc, { what: "copy on node 3" });
  await waitFor(drained, { what: "queue drained" });
  await queue.push([copyTask("a/large.bin", largeCrc, large.length, ["1"], "3")]);
  await waitFor(async () => (await stats()).skipped === before.skipped + 2, { what: "large skipped" });
});

void test("a copy reads its source as background work: the source's read cache is left as it was", async () => {
  const cache = async (url: string): Promise<{ misses: number; bytes: number }> => {
    const text = await (await request(`${url}/metrics`)).body.text();
    const value = (name: string): number =>
      Number(new RegExp(`^backpack_node_read_cache_${name} (\\d+)$`, "m").exec(text)?.[1]);
    return { misses: value("misses_total"), bytes: value("bytes") };
  };
  const body = randomBody(4096);
  const crc = await put(n1.url, "a/cold.bin", body);
  const before = await cache(n1.url);
  await queue.push([copyTask("a/cold.bin", crc, body.length, ["1"], "2")]);
  await waitFor(async () => (await crcOn(n2.url, "a/cold.bin")) === crc, { what: "copy on node 2" });
  const after = await cache(n1.url);
  assert.equal(after.misses, before.misses + 1, "the source read the file from its volume");
  assert.equal(after.bytes, before.bytes, "and did not keep it");
});

void test("a file gone from every source is superseded; one overwritten since has the newer version copied instead", async () => {
  const before = await stats();
  await queue.push([copyTask("never-stored.bin", "0a0b0c0d", 10, ["1"], "2")]);
  const body = randomBody(1000);
  const newer = await put(n1.url, "overwritten.bin", body);
  await queue.push([copyTask("overwritten.bin", "12345678", 1000, ["1"], "3")]);
  await waitFor(async () => (await stats()).superseded === before.superseded + 1, { what: "1 superseded" });
  await waitFor(drained, { what: "queue drained" });
  assert.equal(await crcOn(n2.url, "never-stored.bin"), undefined);
  // The newer write's own task may have been lost: the copy passes on what the source holds now.
  assert.equal(await crcOn(n3.url, "overwritten.bin"), newer);
});

void test("a copy queued before a delete or a newer write does not undo it on the target", async () => {
  const before = await stats();
  const old = randomBody(700);
  const crc = await put(n1.url, "raced.bin", old);
  await put(n2.url, "raced.bin", old);
  const queuedEarlier = {
    ...copyTask("raced.bin", crc, old.length, ["1"], "2"),
    createdAt: Date.now() - 5000,
  };
  // Deleted on node 2 after the task was queued (node 1 still has it: the source is there).
  await request(`${n2.url}/raced.bin`, { method: "DELETE" }).then((r) => r.body.dump());
  const newer = randomBody(800);
  const newerCrc = await put(n3.url, "raced.bin", newer);
  await queue.push([queuedEarlier, { ...queuedEarlier, target: "3" }]);
  await waitFor(async () => (await stats()).superseded === before.superseded + 2, { what: "2 superseded" });
  await waitFor(drained, { what: "queue drained" });
  assert.equal(await crcOn(n2.url, "raced.bin"), undefined, "the delete stands");
  assert.equal(await crcOn(n3.url, "raced.bin"), newerCrc, "the newer write stands");
});

void test("a copy keeps the file's Content-Type", async () => {
  const body = randomBody(300);
  const res = await request(`${n1.url}/typed.png`, {
    method: "PUT",
    body,
    headers: { "content-type": "image/png" },
  });
  await res.body.dump();
  const crc = await crcOn(n1.url, "typed.png");
  assert.ok(crc);
  await queue.push([copyTask("typed.png", crc, body.length, ["1"], "2")]);
  await waitFor(async () => (await crcOn(n2.url, "typed.png")) === crc, { what: "copy on node 2" });
  const head = await request(`${n2.url}/typed.png`, { method: "HEAD" });
  await head.body.dump();
  assert.equal(head.headers["content-type"], "image/png");
});

void test("a copy keeps the file's stored headers", async () => {
  const body = randomBody(200);
  const stored = { "cache-control": "max-age=5", "x-backpack-meta-s3-etag": '"e"' };
  const res = await request(`${n1.url}/kept-headers.bin`, { method: "PUT", body, headers: stored });
  await res.body.dump();
  const crc = await crcOn(n1.url, "kept-headers.bin");
  assert.ok(crc);
  await queue.push([copyTask("kept-headers.bin", crc, body.length, ["1"], "3")]);
  await waitFor(async () => (await crcOn(n3.url, "kept-headers.bin")) === crc, { what: "copy on node 3" });
  const head = await request(`${n3.url}/kept-headers.bin`, { method: "HEAD" });
  await head.body.dump();
  for (const [name, value] of Object.entries(stored)) assert.equal(head.headers[name], value, name);
});

void test("delete tasks remove the file from the target; a missing file is fine", async () => {
  const body = randomBody(500);
  await put(n3.url, "to-delete.bin", body);
  await queue.push([
    {
      op: "delete",
      shard: "1",
      sources: [],
      target: "3",
      key: "to-delete.bin",
      crc: "",
      size: 0,
      createdAt: Date.now(),
    },
    {
      op: "delete",
      shard: "1",
      sources: [],
      target: "3",
      key: "not-there.bin",
      crc: "",
      size: 0,
      createdAt: Date.now(),
    },
  ]);
  await waitFor(async () => (await crcOn(n3.url, "to-delete.bin")) === undefined, { what: "deleted" });
  await waitFor(drained, { what: "queue drained" });
  assert.equal((await queue.stats()).deadLetters, (await queue.deadLetters()).length);
});

void test("a corrupt source replica is skipped: the copy comes from the good one", async () => {
  const body = randomBody(600_000);
  const crc = await put(n1.url, "corrupt.bin", body);
  await put(n3.url, "corrupt.bin", body);
  await corruptOnDisk(n1.dir, body);
  const direct = await request(`${n1.url}/corrupt.bin`);
  const served = await direct.body.arrayBuffer().catch(() => undefined);
  assert.ok(
    direct.statusCode !== 200 || served === undefined || !Buffer.from(served).equals(body),
    "node 1 is corrupt",
  );
  await queue.push([copyTask("corrupt.bin", crc, body.length, ["1", "3"], "2")]);
  await waitFor(async () => (await crcOn(n2.url, "corrupt.bin")) === crc, { what: "good copy on node 2" });
  const res = await request(`${n2.url}/corrupt.bin`);
  assert.deepEqual(Buffer.from(await res.body.arrayBuffer()), body);
  await waitFor(drained, { what: "queue drained" });
});

void test("malformed payloads are dead-lettered with a reason and the worker keeps going", async (t) => {
  const c = new Redis({ host: redis.host, port: redis.port });
  t.after(() => c.disconnect());
  const before = await stats();
  for (const [id, raw] of [
    ["bad-json", "{oops"],
    ["bad-op", JSON.stringify({ op: "move", key: "x" })],
  ]) {
    await c.hset(`${settings.key}:tasks`, id as string, raw as string);
    await c.zadd(`${settings.key}:due`, 0, id as string);
    await c.zadd(`${settings.key}:created`, Date.now(), id as string);
  }
  const body = randomBody(5000);
  const crc = await put(n1.url, "after-bad.bin", body);
  await queue.push([copyTask("after-bad.bin", crc, body.length, ["1"], "3")]);
  await waitFor(async () => (await crcOn(n3.url, "after-bad.bin")) === crc, { what: "good task copied" });
  await waitFor(async () => (await stats()).deadLettered === before.deadLettered + 2, {
    what: "2 dead letters",
  });
  const dead = await queue.deadLetters();
  const reasons = Object.fromEntries(dead.map((d) => [d.id, d.reason]));
  assert.match(reasons["bad-json"] ?? "", /malformed task: payload is not JSON/);
  assert.match(reasons["bad-op"] ?? "", /malformed task: op must be/);
});

void test("follows the map live: a server and shard added later are used without a restart", async (t) => {
  const [n4, n5] = await startNodes(t, 2);
  assert.ok(n4 && n5);
  await map.addServer("4", n4.url);
  await map.addServer("5", n5.url);
  await map.addShard("2", ["4", "5"], 1 << 30);
  const body = randomBody(3000);
  const crc = await put(n4.url, "new-shard.bin", body);
  await queue.push([copyTask("new-shard.bin", crc, body.length, ["4"], "5", "2")]);
  await waitFor(async () => (await crcOn(n5.url, "new-shard.bin")) === crc, {
    what: "copy on the new server",
  });
  await waitFor(drained, { what: "queue drained" });
});

void test("/stats, /metrics, /healthz answer; other paths are JSON errors", async () => {
  const s = await stats();
  for (const k of [
    "depth",
    "oldestTaskAgeMs",
    "copiesPerSec",
    "bytesPerSec",
    "failures",
    "deadLetters",
    "superseded",
  ]) {
    assert.ok(k in s, k);
  }
  const m = await request(`${replicator.url}/metrics`);
  const text = await m.body.text();
  assert.match(text, /backpack_replicator_tasks_total\{outcome="copied"/);
  assert.match(text, /backpack_replication_lag_seconds/);
  const h = await request(`${replicator.url}/healthz`);
  assert.equal(h.statusCode, 200);
  await h.body.dump();
  const nf = await request(`${replicator.url}/nope`);
  assert.equal(nf.statusCode, 404);
  assert.equal(((await nf.body.json()) as { code: string }).code, "NOT_FOUND");
});

void test("a copy whose source has deleted the file since passes the delete on (its own task may be lost)", async () => {
  const v1 = "1800000000000001-0001";
  const v2 = "1800000000000002-0001";
  const body = randomBody(300);
  for (const n of [n1, n2]) {
    const res = await request(`${n.url}/passed-on.bin`, {
      method: "PUT",
      body,
      headers: { "x-backpack-version": v1 },
    });
    await res.body.dump();
  }
  // Deleted on node 1 only, and the delete task for node 2 never made it to the queue.
  const del = await request(`${n1.url}/passed-on.bin`, {
    method: "DELETE",
    headers: { "x-backpack-version": v2 },
  });
  await del.body.dump();
  const crc = await crcOn(n2.url, "passed-on.bin");
  assert.ok(crc);
  await queue.push([{ ...copyTask("passed-on.bin", crc, body.length, ["1"], "2"), version: v1 }]);
  await waitFor(async () => (await crcOn(n2.url, "passed-on.bin")) === undefined, {
    what: "the delete on node 2",
  });
  const head = await request(`${n2.url}/passed-on.bin`, { method: "HEAD" });
  await head.body.dump();
  assert.equal(head.headers["x-backpack-version"], v2, "node 2 holds the delete's tombstone");
  await waitFor(drained, { what: "queue drained" });
});
