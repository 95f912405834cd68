import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import type { CoordinatorStats } from "../../src/client/coordinator-client.js";
import { startEmbedded } from "../helpers/embedded.js";
import { flipStoredByte } from "../helpers/volume-damage.js";
import { waitFor } from "../helpers/wait.js";

/**
 * The embedded cluster heals itself with its default settings, as a user meets it: files uploaded, the cluster
 * stopped with Ctrl-C, one node's data dir removed (a replaced disk) and a byte flipped in a stored body on
 * another node (a rotten sector), the cluster started again. Within 2 minutes of the restart the wiped node
 * serves every file of its shard byte-exact and the damaged file is restored, with no client read of it and no
 * operator; `/stats` then shows nothing under-replicated.
 */
test(
  "backpack dev, default settings: a wiped node is refilled and a damaged record restored within 2 minutes",
  { timeout: 5 * 60_000 },
  async (t) => {
    const { cluster, data } = await startEmbedded(t);
    const coordinatorUrl = (): string => /coordinator 1\s+(http:\S+)/.exec(cluster.stdout)![1]!;
    const coordinator = coordinatorUrl();
    const nodeUrls = (): Map<string, { url: string; shard: string }> =>
      new Map(
        [...cluster.stdout.matchAll(/node (\d+) \(shard (\d+)\)\s+(http:\S+)/g)].map((m) => [
          m[1]!,
          { shard: m[2]!, url: m[3]! },
        ]),
      );
    const files: { key: string; shard: string; body: Buffer }[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < 300) {
          const key = `heal/${next++}.bin`;
          const body = randomBytes(randomInt(100, 16 * 1024));
          const res = await fetch(`${coordinator}/${key}`, { method: "PUT", body });
          assert.equal(res.status, 200, await res.clone().text());
          files.push({ key, body, shard: ((await res.json()) as { shard_id: string }).shard_id });
        }
      }),
    );
    await waitFor(
      async () =>
        ((await (await fetch(`${coordinator}/stats`)).json()) as CoordinatorStats).queue_length === 0,
      { timeoutMs: 60_000, what: "the copies made" },
    );

    // Stopped with Ctrl-C; node 1's data dir removed; a byte flipped in a body on a node of another shard.
    assert.equal(await cluster.kill("SIGINT"), 0, cluster.stderr);
    const before = nodeUrls();
    const wiped = "1";
    const wipedShard = before.get(wiped)!.shard;
    await rm(join(data, `node-${wiped}`), { recursive: true });
    assert.equal(existsSync(join(data, `node-${wiped}`)), false);
    const rotten = [...before].find(([, n]) => n.shard !== wipedShard)![0];
    const flipped = await flipStoredByte(join(data, `node-${rotten}`), Math.random);
    assert.ok(flipped, `a record to damage on node ${rotten}`);
    const damaged = files.find((f) => f.key === flipped.key)!;

    await cluster.start();
    const nodes = nodeUrls();
    const again = coordinatorUrl();
    const mine = files.filter((f) => f.shard === wipedShard);
    assert.ok(mine.length > 50, `${mine.length} files on the wiped node's shard`);
    const serves = async (url: string, f: { key: string; body: Buffer }): Promise<boolean> => {
      const res = await fetch(`${url}/${f.key}`);
      return res.status === 200 && Buffer.from(await res.arrayBuffer()).equals(f.body);
    };
    // The bound the issue sets for the defaults (repair every 30 s, 200 files/s; scrub at start).
    await waitFor(
      async () => {
        for (const f of mine) if (!(await serves(nodes.get(wiped)!.url, f))) return false;
        return serves(nodes.get(rotten)!.url, damaged);
      },
      {
        timeoutMs: 120_000,
        intervalMs: 500,
        what: "the wiped node refilled and the damaged record restored",
      },
    );
    const stats = await waitFor(
      async () => {
        const s = (await (await fetch(`${again}/stats`)).json()) as CoordinatorStats;
        return s.repair.length === 3 && s.under_replicated_files === 0 ? s : undefined;
      },
      { timeoutMs: 60_000, what: "nothing under-replicated" },
    );
    const shardHealth = stats.repair.find((h) => h.shard === wipedShard)!;
    assert.equal(shardHealth.nodes[wiped]?.state, "ok");
    assert.ok(stats.repair.reduce((n, h) => n + h.repairs.copied, 0) >= mine.length);
    assert.ok(stats.repair.reduce((n, h) => n + h.repairs.restored, 0) >= 1, "the damaged record restored");
  },
);
