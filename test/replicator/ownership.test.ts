import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { ProcCluster, upload } from "../coordinator/proc-cluster.js";
import type { ChildHandle } from "../helpers/process.js";
import { startRedisServers } from "../helpers/redis.js";
import { freePort, waitFor } from "../helpers/wait.js";

interface Comparison {
  shard: string;
  startedAt: number;
  finishedAt: number;
}

interface RepairStatus {
  owned: string[];
  shards: Comparison[];
  running: Comparison[];
}

async function repairOf(r: ChildHandle): Promise<RepairStatus> {
  return ((await (await fetch(`${r.url}/stats`)).json()) as { repair: RepairStatus }).repair;
}

/**
 * "The next one takes over": with two replicators in the ring, each shard's repair (anti-entropy) has one
 * owner on the ring's placement among the live replicators. Kill the owner of a shard: the other takes it
 * over within seconds; restart it: it takes it back. Both replicators' comparisons of a shard never overlap,
 * and every file uploaded meanwhile reaches every node of its shard (the queue's copies, leased by either).
 */
void test("a shard's repair has one owner among the replicators; its successor takes over and gives it back", async (t) => {
  const [redis] = await startRedisServers(t, 1);
  const c = await ProcCluster.create(t);
  const shards: Record<string, string[]> = { "1": ["1", "2"], "2": ["3", "4"] };
  for (const id of ["1", "2", "3", "4"]) await c.startNode(id);
  await c.admin("backpack-coordinator-init", "own-queue", `${redis!.host}:${redis!.port}`);
  for (const [id, url] of c.nodeUrls) await c.admin("backpack-coordinator-add-server", id, url);
  for (const [shard, servers] of Object.entries(shards)) {
    await c.admin("backpack-coordinator-add-shard", shard, servers.join(","), "1gb");
    await c.admin("backpack-coordinator-enable-shard", shard);
  }
  const coordinator = await c.startCoordinator();
  // Fixed ports: a restarted replicator is the same ring member (its id is its address).
  const replicators = await Promise.all(
    [0, 1].map(async () =>
      c.track({
        command: "backpack-replicator",
        args: [
          c.zk,
          c.root,
          "8",
          "--listen",
          `127.0.0.1:${await freePort()}`,
          "--repair-every",
          "2s",
          "--lease",
          "5s",
        ],
      }),
    ),
  );

  // Every comparison either replicator finished, to check that none of a shard's overlap (a comparison cut
  // short by the SIGKILL never finishes and is not counted).
  const seen = new Map<string, Comparison & { by: number }>();
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      for (const [i, r] of replicators.entries()) {
        if (!r.running) continue;
        const status = await repairOf(r).catch(() => undefined);
        for (const cmp of status?.shards ?? []) {
          seen.set(`${i} ${cmp.shard} ${cmp.startedAt}`, { ...cmp, by: i });
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  t.after(async () => {
    watching = false;
    await watcher;
  });

  const owners = async (): Promise<string[][]> =>
    Promise.all(replicators.map(async (r) => (r.running ? (await repairOf(r)).owned : [])));
  await waitFor(
    async () => {
      const [a, b] = await owners();
      return a!.length + b!.length === 2 && new Set([...a!, ...b!]).size === 2;
    },
    { timeoutMs: 30_000, what: "each shard owned by exactly one replicator" },
  );
  const before = await owners();
  const ownerIndex = before[0]!.includes("1") ? 0 : 1;
  const owner = replicators[ownerIndex]!;
  const other = replicators[1 - ownerIndex]!;

  const files: { key: string; body: Buffer; shard: string }[] = [];
  const put = async (prefix: string, n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      const body = randomBytes(256);
      const r = await upload(coordinator.url, `${prefix}${i}`, body);
      assert.equal(r.status, 200, JSON.stringify(r.json));
      files.push({ key: `${prefix}${i}`, body, shard: r.json.shard_id as string });
    }
  };
  await put("before-", 20);

  await owner.kill("SIGKILL");
  assert.equal(owner.proc?.signalCode, "SIGKILL");
  const killedAt = Date.now();
  await waitFor(async () => (await repairOf(other)).owned.length === 2, {
    timeoutMs: 30_000,
    what: "the other replicator to own both shards",
  });
  await put("during-", 20);
  await waitFor(
    async () => (await repairOf(other)).shards.some((s) => s.shard === "1" && s.startedAt >= killedAt),
    { timeoutMs: 30_000, what: "the successor to compare shard 1" },
  );

  await owner.start();
  const restartedAt = Date.now();
  await waitFor(
    async () => {
      const [a, b] = await owners();
      return JSON.stringify([a, b]) === JSON.stringify(before);
    },
    { timeoutMs: 30_000, what: "the restarted replicator to own its shards again" },
  );
  await waitFor(
    async () => (await repairOf(owner)).shards.some((s) => s.shard === "1" && s.startedAt >= restartedAt),
    { timeoutMs: 30_000, what: "the returned owner to compare shard 1 again" },
  );
  await put("after-", 20);

  for (const f of files) await c.waitHeldBy(shards[f.shard]!, f.key, f.body);
  watching = false;
  await watcher;

  const byShard = new Map<string, (Comparison & { by: number })[]>();
  for (const cmp of seen.values()) byShard.set(cmp.shard, [...(byShard.get(cmp.shard) ?? []), cmp]);
  for (const [shard, list] of byShard) {
    list.sort((x, y) => x.startedAt - y.startedAt);
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1]!;
      const cur = list[i]!;
      if (prev.by === cur.by) continue;
      assert.ok(
        prev.finishedAt <= cur.startedAt,
        `shard ${shard}: replicator ${prev.by + 1}'s comparison (${prev.startedAt}-${prev.finishedAt}) overlaps ` +
          `replicator ${cur.by + 1}'s (from ${cur.startedAt})`,
      );
    }
  }
});
