import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { EmbeddedClusterMap } from "../../src/cluster/embedded.js";
import type { MaintenanceTurnStats } from "../../src/node/maintenance-turn.js";
import { ProcCluster, upload } from "../coordinator/proc-cluster.js";
import { waitFor } from "../helpers/wait.js";

async function turnOf(url: string): Promise<MaintenanceTurnStats> {
  return ((await (await fetch(`${url}/stats`)).json()) as { maintenance: MaintenanceTurnStats }).maintenance;
}

/**
 * The ring's tick schedules background work: the two nodes of a shard, scrubbing continuously, learn their
 * shard from the coordinator and take turns in windows of the cluster-wide tick; no window is worked by both,
 * and each works only the windows of its own position.
 */
void test("the nodes of a shard take turns at compaction and scrub, on the ring's tick", async (t) => {
  const c = await ProcCluster.create(t);
  const map = new EmbeddedClusterMap({ file: c.zk.slice("file:".length), pollIntervalMs: 50 });
  await map.start();
  t.after(() => map.stop());
  await map.init({ key: "file:" + join(c.dir, "queue"), servers: [] });
  for (const id of ["1", "2"]) {
    await c.startNode(id, ["--scrub-rate", "1mb", "--scrub-every", "1s"]);
    await map.addServer(id, c.nodeUrls.get(id)!);
  }
  await map.addShard("1", ["1", "2"], 1024 ** 3);
  await map.setShardEnabled("1", true);
  const coordinator = await c.startCoordinator();
  for (let i = 0; i < 20; i++) {
    const r = await upload(coordinator.url, `f${i}`, Buffer.alloc(4096, i), { "x-backpack-replicas": "all" });
    assert.equal(r.status, 200);
  }
  const urls = ["1", "2"].map((id) => c.nodeUrls.get(id)!);
  await waitFor(
    async () => {
      const turns = await Promise.all(urls.map(turnOf));
      return turns.every((x) => x.scheduled && x.windowsWorked.length >= 2);
    },
    { timeoutMs: 90_000, intervalMs: 250, what: "both nodes to work in turns of their own" },
  );
  const [a, b] = await Promise.all(urls.map(turnOf));
  assert.deepEqual([a!.shard, a!.shardSize, b!.shard, b!.shardSize], ["1", 2, "1", 2]);
  assert.deepEqual([a!.position, b!.position].sort(), [0, 1]);
  for (const x of [a!, b!]) {
    for (const w of x.windowsWorked)
      assert.equal(w % 2, x.position, `window ${w} is not position ${x.position}'s`);
  }
  const both = a!.windowsWorked.filter((w) => b!.windowsWorked.includes(w));
  assert.deepEqual(both, [], "no window worked by both nodes");
});
