import { test } from "node:test";
import assert from "node:assert/strict";
import { openClusterMap } from "../../src/cluster/open.js";
import { runBin, type ChildHandle } from "../helpers/process.js";
import { startRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";
import { startZooKeeper } from "../helpers/zookeeper.js";
import { ProcCluster, upload } from "./proc-cluster.js";

/**
 * Acknowledged deletes and overwrites stay final with real processes: ZooKeeper, Redis, shard 1 on nodes 1
 * and 2, a coordinator and (when asked) a replicator.
 */
async function setup(t: Parameters<typeof ProcCluster.create>[0], root: string, nodeArgs: string[] = []) {
  const zk = await startZooKeeper(t);
  const redis = await startRedis(t);
  const c = await ProcCluster.create(t, zk.connectString, root);
  await Promise.all(["1", "2"].map((id) => c.startNode(id, nodeArgs)));
  const map = openClusterMap({ zk: zk.connectString, root });
  await map.start();
  t.after(() => map.stop());
  await map.init({ key: `${root.slice(1)}-queue`, servers: [redis.endpoint] });
  for (const id of ["1", "2"]) await map.addServer(id, c.nodeUrls.get(id) as string);
  await map.addShard("1", ["1", "2"], 1024 ** 3);
  await map.setShardEnabled("1", true);
  const coordinator = await c.startCoordinator();
  return { c, coordinator };
}

async function queueDrained(coordinator: ChildHandle): Promise<void> {
  await waitFor(
    async () => {
      const st = (await (await fetch(`${coordinator.url}/stats`)).json()) as { queue_length: number | null };
      return st.queue_length === 0;
    },
    { timeoutMs: 60_000, what: "the replication queue to drain" },
  );
}

/** SIGKILLs a process and checks that it really died of it. */
async function killed(p: ChildHandle): Promise<void> {
  await p.kill("SIGKILL");
  assert.equal(p.running, false);
  assert.equal(p.proc?.signalCode, "SIGKILL", "the process died of SIGKILL");
}

void test("a delete made before the upload's queued copy lands: the copy is refused, the file stays deleted", async (t) => {
  const { c, coordinator } = await setup(t, "/early");
  // No replicator yet: the upload's copy to the second node waits in the queue.
  const put = await upload(coordinator.url, "early.txt", "first version");
  assert.equal(put.status, 200);
  const del = await fetch(`${coordinator.url}/1:early.txt`, { method: "DELETE" });
  assert.equal(del.status, 204);
  assert.ok(del.headers.get("x-backpack-version"), "the delete's version is answered");
  await c.startReplicator();
  await queueDrained(coordinator);
  for (const id of ["1", "2"]) assert.equal((await c.fromNode(id, "early.txt")).status, 404, `node ${id}`);
  assert.equal((await fetch(`${coordinator.url}/1:early.txt`)).status, 404);
});

void test("a delete with one replica down stays deleted after it returns, restarts and compacts; a late copy is refused", async (t) => {
  // Small volumes and a low garbage ratio, so that overwrites seal volumes and compaction runs soon.
  const { c, coordinator } = await setup(t, "/down", ["--volume-size", "16kb", "--compact-ratio", "0.3"]);
  await c.startReplicator();
  const put = await upload(coordinator.url, "doomed.txt", "to be deleted", { "x-backpack-replicas": "all" });
  assert.equal(put.status, 200);
  const doomed = await fetch(`${c.nodeUrls.get("2")}/doomed.txt`, { method: "HEAD" });
  const oldVersion = doomed.headers.get("x-backpack-version");
  assert.ok(oldVersion);
  const node2 = c.nodes.get("2")!;
  await killed(node2);
  const del = await fetch(`${coordinator.url}/1:doomed.txt`, { method: "DELETE" });
  assert.equal(del.status, 204);
  assert.equal(del.headers.get("x-backpack-queued"), "2", "node 2 gets a queued delete");
  assert.equal((await fetch(`${coordinator.url}/1:doomed.txt`)).status, 404);
  await node2.start();
  await queueDrained(coordinator);
  assert.equal((await c.fromNode("2", "doomed.txt")).status, 404, "the queued delete landed");

  // Node 2 restarts, its volumes are compacted (overwrites of a filler key), and it restarts again.
  await killed(node2);
  await node2.start();
  for (let i = 0; i < 40; i++) {
    const res = await fetch(`${c.nodeUrls.get("2")}/filler`, { method: "PUT", body: Buffer.alloc(2000, i) });
    assert.equal(res.status, 201);
  }
  await waitFor(() => node2.stderr.includes("volume compacted"), { what: "a compaction on node 2" });
  await killed(node2);
  await node2.start();
  for (const id of ["1", "2"]) assert.equal((await c.fromNode(id, "doomed.txt")).status, 404, `node ${id}`);
  // A copy of the version from before the delete (as a replicator that lagged behind would send it).
  const late = await fetch(`${c.nodeUrls.get("2")}/doomed.txt`, {
    method: "PUT",
    body: "to be deleted",
    headers: { "x-backpack-version": oldVersion },
  });
  assert.equal(late.status, 409);
  assert.equal(((await late.json()) as { code: string }).code, "STALE_VERSION");
  assert.equal((await c.fromNode("2", "doomed.txt")).status, 404, "the late copy did not bring it back");
});

void test("reads never go back to a version older than one the coordinator acknowledged", async (t) => {
  const { c, coordinator } = await setup(t, "/reads");
  const replicator = await c.startReplicator();
  assert.equal(
    (await upload(coordinator.url, "doc.txt", "v1", { "x-backpack-replicas": "all" })).status,
    200,
  );
  // With the replicator frozen, v2 (written the original's way) is on one node only and its copy waits.
  replicator.pause();
  t.after(() => replicator.resume());
  assert.equal(
    (await upload(coordinator.url, "doc.txt", "v2", { "x-backpack-replicas": "one" })).status,
    200,
  );
  const holders: string[] = [];
  for (const id of ["1", "2"])
    if ((await c.fromNode(id, "doc.txt")).body.toString() === "v2") holders.push(id);
  assert.equal(holders.length, 1, "v2 is on one node, v1 still on the other");
  // Servers are asked in random order: over 30 reads the stale one is asked first about half the time.
  for (let i = 0; i < 30; i++) {
    const res = await fetch(`${coordinator.url}/1:doc.txt`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "v2");
  }
  // `backpack stat` shows the version and which node holds it, which an older one.
  const stat = await runBin("backpack", ["stat", "1:doc.txt", "--to", coordinator.url, "--json"]);
  assert.equal(stat.code, 0, stat.stderr);
  const doc = JSON.parse(stat.stdout) as { version: string; nodes: { server: string; holds: string }[] };
  assert.match(doc.version, /^\d{16}-[0-9a-f]{4}$/);
  assert.deepEqual(
    doc.nodes.map((n) => [n.server, n.holds]).sort(),
    ["1", "2"].map((id) => [id, id === holders[0] ? "holds" : "older"]),
  );
  // The only node with v2 down: an error, not the old bytes.
  await killed(c.nodes.get(holders[0]!)!);
  const res = await fetch(`${coordinator.url}/1:doc.txt`);
  assert.equal(res.status, 503);
  assert.equal(((await res.json()) as { code: string }).code, "UNAVAILABLE");
});
