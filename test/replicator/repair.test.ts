import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { request } from "undici";
import { silentLogger } from "../../src/common/logger.js";
import { runBin } from "../helpers/process.js";
import { openQueue } from "../../src/queue/open.js";
import { replicatorConfig } from "../../src/replicator/config.js";
import { ReplicatorService } from "../../src/replicator/service.js";
import { waitFor } from "../helpers/wait.js";
import { clusterMap, corruptOnDisk, randomBody, startNodes, type TestNode } from "./fixture.js";

/**
 * Anti-entropy against real node processes: shard 1 on three nodes whose replicas were made to differ the
 * ways a cluster's do (a wiped disk, an overwrite or a delete one node missed with its task lost, bit rot),
 * and a replicator comparing them every 300 ms with an empty queue: repair alone makes them the same.
 */
const hooks = { after };
const nodes: TestNode[] = await startNodes(hooks, 3);
const queueDir = await mkdtemp(join(tmpdir(), "backpack-queue-"));
after(() => rm(queueDir, { recursive: true, force: true }));
const settings = { key: `file:${join(queueDir, "q")}`, servers: [] };
const { map, file: mapFile } = await clusterMap(hooks, nodes, { "1": ["1", "2", "3"] }, settings);
const queue = await openQueue({ settings });
await queue.start();
after(() => queue.stop());
const [n1, n2, n3] = nodes as [TestNode, TestNode, TestNode];

const V = (n: number): string => `${String(1_800_000_000_000_000 + n)}-0001`;

async function putV(
  node: TestNode,
  key: string,
  body: Buffer,
  version: string,
  headers: Record<string, string> = {},
): Promise<void> {
  const res = await request(`${node.url}/${key}`, {
    method: "PUT",
    body,
    headers: { ...headers, "x-backpack-version": version },
  });
  await res.body.dump();
  assert.equal(res.statusCode, 201, `PUT ${key} on ${node.url}`);
}

async function read(
  node: TestNode,
  key: string,
): Promise<{ status: number; body: Buffer; version?: string }> {
  const res = await request(`${node.url}/${key}`);
  const body = Buffer.from(await res.body.arrayBuffer());
  const v = res.headers["x-backpack-version"];
  return { status: res.statusCode, body, ...(typeof v === "string" ? { version: v } : {}) };
}

let running: ReplicatorService | undefined;

async function startReplicator(): Promise<ReplicatorService> {
  await running?.stop();
  const r = new ReplicatorService(replicatorConfig({ repairIntervalMs: 300, repairFilesPerSec: 1000 }), {
    map,
    queue,
    log: silentLogger,
  });
  await r.start();
  after(() => r.stop());
  running = r;
  return r;
}

void test("repair alone makes replicas the same: a wiped node refilled, missed overwrites and deletes applied, newest wins", async () => {
  const files = Array.from({ length: 40 }, (_, i) => ({
    key: `refill/${i}`,
    body: randomBody(100 + i * 50),
  }));
  for (const f of files) for (const n of [n1, n2]) await putV(n, f.key, f.body, V(1));
  // A file with stored headers: repair's copy carries them.
  for (const n of [n1, n2])
    await putV(n, "with-headers", randomBody(100), V(1), { "x-backpack-meta-s3-etag": '"r"' });
  // Overwritten while node 3 was down, its copy task lost: node 3 keeps the old content.
  const fresh = randomBody(500);
  for (const n of [n1, n2]) await putV(n, "overwritten", fresh, V(20));
  await putV(n3, "overwritten", randomBody(400), V(10));
  // Deleted while nodes 2 and 3 were down, the delete tasks lost.
  for (const n of [n1, n2, n3]) await putV(n, "deleted", randomBody(300), V(30));
  const del = await request(`${n1.url}/deleted`, {
    method: "DELETE",
    headers: { "x-backpack-version": V(31) },
  });
  await del.body.dump();
  // A newer write only node 3 holds must not be undone by the others' older versions.
  for (const n of [n1, n2]) await putV(n, "newer-on-3", randomBody(200), V(40));
  const newest = randomBody(210);
  await putV(n3, "newer-on-3", newest, V(41));

  const replicator = await startReplicator();
  await waitFor(
    async () => {
      for (const f of files) if (!(await read(n3, f.key)).body.equals(f.body)) return false;
      return true;
    },
    { what: "node 3 refilled", timeoutMs: 60_000 },
  );
  for (const n of [n1, n2, n3]) {
    await waitFor(async () => (await read(n, "overwritten")).body.equals(fresh), {
      what: `newer content on ${n.url}`,
    });
    await waitFor(async () => (await read(n, "deleted")).status === 404, { what: `delete on ${n.url}` });
    await waitFor(async () => (await read(n, "newer-on-3")).body.equals(newest), {
      what: `newest on ${n.url}`,
    });
  }
  assert.equal((await read(n1, "deleted")).status, 404, "the delete is not undone");
  await waitFor(async () => (await read(n3, "with-headers")).status === 200, {
    what: "with-headers on node 3",
  });
  const head = await request(`${n3.url}/with-headers`, { method: "HEAD" });
  await head.body.dump();
  assert.equal(head.headers["x-backpack-meta-s3-etag"], '"r"', "repair's copy keeps the stored headers");
  const stats = (await (await request(`${replicator.url}/stats`)).body.json()) as {
    repair: { shards: { shard: string; copied: number; deleted: number; skipped: unknown[] }[] };
  };
  const shard = stats.repair.shards.find((s) => s.shard === "1");
  assert.ok(shard, "the shard's last comparison is reported");
  await replicator.stop();
});

void test("a record damaged on one replica is found by the scrub after a restart, without any client read, and restored", async () => {
  const body = randomBody(5000);
  for (const n of [n1, n2, n3]) {
    await putV(n, "rotten", body, V(50));
    await putV(n, "after-rotten", randomBody(100), V(51)); // not the volume's last record: not a torn tail
  }
  // Damaged while the node runs: its scrub finds it (a pass starts at once after a restart).
  await corruptOnDisk(n2.dir, body);
  await n2.child.kill("SIGKILL");
  assert.equal(n2.child.proc?.signalCode, "SIGKILL");
  await n2.child.start();
  await startReplicator();
  // Found by the node itself (its recovery or its scrub), before any read of it; repair copies the same version
  // back from a peer.
  await waitFor(
    async () => {
      const stats = (await (await request(`${n2.url}/stats`)).body.json()) as {
        store: { checksumErrors: number };
      };
      return stats.store.checksumErrors >= 1;
    },
    { what: "the node to find the damaged record", timeoutMs: 30_000 },
  );
  await waitFor(async () => (await read(n2, "rotten")).body.equals(body), {
    what: "the record restored on node 2",
    timeoutMs: 30_000,
  });
  assert.equal((await read(n2, "rotten")).version, V(50));
});

void test("backpack repair compares now: --dry-run lists, a run repairs, an unreachable server makes it exit 1", async () => {
  await running?.stop();
  const body = randomBody(700);
  await putV(n1, "cli/only-on-1", body, V(60));
  const dry = await runBin("backpack", ["repair", `file:${mapFile}`, "/", "--dry-run"]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /copy cli\/only-on-1 to server 2 \(version 1800000000000060-0001\)/);
  assert.match(dry.stdout, /copy cli\/only-on-1 to server 3/);
  assert.equal((await read(n2, "cli/only-on-1")).status, 404, "a dry run changes nothing");
  const run = await runBin("backpack", ["repair", `file:${mapFile}`, "/", "1", "--json"]);
  assert.equal(run.code, 0, run.stderr);
  const report = JSON.parse(run.stdout) as { copied: number; underReplicated: number };
  assert.equal(report.copied, 2);
  assert.equal(report.underReplicated, 1);
  for (const n of [n2, n3]) assert.ok((await read(n, "cli/only-on-1")).body.equals(body));
  await n3.child.kill("SIGKILL");
  const down = await runBin("backpack", ["repair", `file:${mapFile}`, "/"]);
  assert.equal(down.code, 1);
  assert.match(down.stdout, /server 3 not compared: /);
  await n3.child.start();
});
