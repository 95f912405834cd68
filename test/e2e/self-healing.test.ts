import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { existsSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import { after, test } from "node:test";
import { ChaosCluster, SHARDS } from "../helpers/chaos-cluster.js";
import {
  formatReport,
  isClean,
  listNode,
  repairLogTotals,
  type ListedEntry,
} from "../helpers/replica-state.js";
import { waitFor } from "../helpers/wait.js";
import { runBin } from "../helpers/process.js";
import type { CoordinatorStats, FileLocation, ShardHealth } from "../../src/client/coordinator-client.js";

/**
 * Self-healing with real processes: ZooKeeper, 2 Redis servers, 4 storage nodes in 2 shards of 2, 2
 * coordinators and a replicator comparing every shard's replicas every 2 s (anti-entropy). Each test makes the
 * replicas differ in a way the replication queue cannot fix — a node's data dir removed (tombstones and all), a
 * byte flipped in a stored body, a delete or an overwrite missed by a node that was down while its task was lost
 * with the queue (FLUSHALL), copies lost with the whole queue — and checks, reading straight from the nodes, that
 * repair alone brings every replica back byte-exact and changes nothing else; then that the replicator's next
 * comparison of every shard, begun after the fix, compared every node and found nothing under-replicated and no
 * differing bucket. One cluster for the file (tests run in order); each test uses keys of its own.
 */
const t0 = performance.now();
// The cluster's processes are stopped after the last test of the file.
const hooks = { after: (fn: () => unknown) => after(async () => void (await fn())) };
const cluster = await ChaosCluster.start(hooks, () => performance.now() - t0, {
  replicatorArgs: ["--repair-every", "2s", "--repair-rate", "1000"],
});
const SERVERS = Object.values(SHARDS).flat().sort();

interface StoredFile {
  key: string;
  shard: string;
  body: Buffer;
}

/** PUT through a coordinator; the shard it was stored on. */
async function put(
  key: string,
  body: Buffer,
  coordinator = 1,
  headers: Record<string, string> = {},
): Promise<string> {
  const res = await fetch(`${cluster.coordinatorUrl(coordinator)}/${key}`, { method: "PUT", body, headers });
  const text = await res.text();
  assert.equal(res.status, 200, `PUT ${key}: ${res.status} ${text}`);
  const shard = (JSON.parse(text) as { shard_id?: string }).shard_id;
  assert.ok(shard !== undefined && Object.hasOwn(SHARDS, shard), `PUT ${key}: ${text}`);
  return shard;
}

/** `count` files of 1-16 KiB under `prefix`, 8 uploads at a time through both coordinators. */
async function uploadFiles(
  prefix: string,
  count: number,
  headers: Record<string, string> = {},
): Promise<StoredFile[]> {
  const files: StoredFile[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < count) {
        const i = next++;
        const key = `${prefix}${i}`;
        const body = randomBytes(randomInt(1024, 16 * 1024 + 1));
        files.push({ key, body, shard: await put(key, body, 1 + (i % 2), headers) });
      }
    }),
  );
  return files;
}

/** GET straight from a node. */
async function fromNode(server: string, key: string): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(`${cluster.nodeUrl(server)}/${key}`);
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

/** The nodes of its shard that serve the file byte-exact. */
async function holders(f: StoredFile): Promise<string[]> {
  const out: string[] = [];
  for (const s of SHARDS[f.shard]!) {
    const got = await fromNode(s, f.key);
    if (got.status === 200 && got.body.equals(f.body)) out.push(s);
  }
  return out;
}

/** Waits until every node of its shard serves every file byte-exact; names the first that does not. */
async function waitAllHeld(files: readonly StoredFile[], timeoutMs: number): Promise<void> {
  let missing = "";
  await waitFor(
    async () => {
      for (const f of files) {
        const held = await holders(f);
        if (held.length < SHARDS[f.shard]!.length) {
          missing = `${f.shard}:${f.key} held byte-exact by [${held.join(",")}] only`;
          return false;
        }
      }
      return true;
    },
    { timeoutMs, intervalMs: 250, what: `${files.length} files on every node of their shard` },
  ).catch((err: unknown) => {
    throw new Error(
      `${(err as Error).message}; ${missing}; replicator: ${cluster.replicator.stderr.slice(-3000)}`,
    );
  });
}

/** Every node's listing (files, tombstones, damaged records), sorted by key. */
async function listAll(): Promise<Map<string, ListedEntry[]>> {
  const out = new Map<string, ListedEntry[]>();
  for (const s of SERVERS) {
    out.set(
      s,
      [...(await listNode(cluster.nodeUrl(s))).values()].sort((a, b) =>
        a.key < b.key ? -1 : a.key > b.key ? 1 : 0,
      ),
    );
  }
  return out;
}

/** The shard's repair health in coordinator 1's `/stats`. */
async function shardHealth(shard: string): Promise<ShardHealth | undefined> {
  const stats = (await (await fetch(`${cluster.coordinatorUrl(1)}/stats`)).json()) as CoordinatorStats;
  return stats.repair.find((h) => h.shard === shard);
}

/** `backpack stat <address> --json` against coordinator 2. */
async function statOf(address: string): Promise<FileLocation> {
  const r = await runBin("backpack", ["stat", address, "--to", cluster.coordinatorUrl(2), "--json"]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as FileLocation;
}

/** SIGKILLs node `server` and checks that its process is gone. */
async function killNode(server: string): Promise<void> {
  const pid = cluster.procs.nodes.get(server)?.pid;
  assert.ok(pid !== undefined, `node ${server} has a process`);
  await cluster.kill({ role: "node", id: server });
  assert.throws(() => process.kill(pid, 0), { code: "ESRCH" }, `node ${server} (pid ${pid}) is gone`);
}

/**
 * 4: the replicator's first comparison of every shard begun after `sinceMs` compared every server and found
 * nothing under-replicated and no differing bucket.
 */
async function assertCleanComparisonSince(sinceMs: number): Promise<void> {
  const reports = await cluster.waitCompared(sinceMs, { timeoutMs: 30_000 });
  for (const r of reports) {
    assert.equal(r.underReplicated, 0, formatReport(r));
    assert.equal(r.differingBuckets, 0, formatReport(r));
    assert.ok(isClean(r, SHARDS[r.shard]!), formatReport(r));
  }
}

void test("a node whose data dir was removed comes back empty and is refilled by repair, byte-exact, nothing else changed", async () => {
  const uploaded = await uploadFiles("wiped/", 200);
  // A tenth deleted: the wiped node loses their tombstones too, and must get them back from its peer.
  const deleted = uploaded.filter((_, i) => i % 10 === 0);
  for (const f of deleted) {
    const res = await fetch(`${cluster.coordinatorUrl(1)}/${f.shard}:${f.key}`, { method: "DELETE" });
    assert.equal(res.status, 204, `DELETE ${f.shard}:${f.key}`);
  }
  const files = uploaded.filter((f) => !deleted.includes(f));
  await cluster.waitDrained(60_000);
  await waitAllHeld(files, 30_000);
  const before = await listAll();
  const victim = "1";
  const mine = files.filter((f) => SHARDS[f.shard]!.includes(victim));
  const tombstones = deleted.filter((f) => SHARDS[f.shard]!.includes(victim));
  assert.ok(mine.length >= 60, `files on node ${victim}'s shard: ${mine.length} of ${files.length}`);
  assert.equal(
    before.get(victim)!.filter((e) => e.deleted !== true).length,
    mine.length,
    `node ${victim} held exactly this test's files`,
  );
  assert.equal(
    before.get(victim)!.filter((e) => e.deleted).length,
    tombstones.length,
    "and their tombstones",
  );

  const logFrom = cluster.replicator.stderr.length;
  const shard = Object.keys(SHARDS).find((id) => SHARDS[id]!.includes(victim))!;
  const totalsBefore = (await shardHealth(shard))?.repairs ?? { copied: 0, deleted: 0 };
  await killNode(victim);
  await cluster.removeData(victim);
  assert.equal(existsSync(cluster.nodeDir(victim)), false, "the data dir is gone");

  // While it is down, the health says so: the node down, every file of its shard under-replicated, in
  // /stats, `backpack status` (text and --json), Prometheus; and `backpack stat` names it unreachable.
  const down = await waitFor(
    async () => {
      const h = await shardHealth(shard);
      return h?.nodes[victim]?.state === "down" && h.underReplicated >= mine.length ? h : undefined;
    },
    { timeoutMs: 30_000, what: `node ${victim} reported down` },
  );
  assert.ok(down.lastComparison!.skipped.some((x) => x.server === victim));
  const status = await runBin("backpack", ["status", "--to", cluster.coordinatorUrl(1)]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`^node ${victim} .* down \\(`, "m"));
  assert.match(status.stdout, /^repair: [1-9]\d* files under-replicated$/m);
  const metrics = await (await fetch(`${cluster.coordinatorUrl(2)}/metrics`)).text();
  assert.match(
    metrics,
    new RegExp(`backpack_shard_under_replicated_files\\{[^}]*shard="${shard}"[^}]*\\} [1-9]`),
  );
  assert.match(metrics, new RegExp(`backpack_server_down\\{[^}]*server="${victim}"[^}]*\\} 1`));
  const probe = mine[0]!;
  const statDown = await statOf(`${probe.shard}:${probe.key}`);
  assert.equal(statDown.nodes.find((n) => n.server === victim)?.holds, "unreachable");

  await cluster.restart({ role: "node", id: victim });
  await waitAllHeld(mine, 60_000);
  const fixedAt = Date.now();
  const afterwards = await listAll();
  // The refilled node lists exactly what it listed before (keys, versions, checksums, sizes): no extra key, no
  // other version; the other nodes did not change at all.
  for (const s of SERVERS) assert.deepEqual(afterwards.get(s), before.get(s), `node ${s}'s listing`);
  const totals = repairLogTotals(cluster.replicator.stderr.slice(logFrom));
  assert.ok(totals.copied >= mine.length, `repair copied ${totals.copied} files for ${mine.length} lost`);
  assert.ok(
    totals.deleted >= tombstones.length,
    `repair put back ${totals.deleted} of ${tombstones.length} tombstones`,
  );
  await assertCleanComparisonSince(fixedAt);

  // Healthy again everywhere it is shown: nothing under-replicated, the node ok, the repairs counted.
  const healed = await waitFor(
    async () => {
      const h = await shardHealth(shard);
      return h && h.lastComparison && h.lastComparison.startedAt >= fixedAt && h.underReplicated === 0
        ? h
        : undefined;
    },
    { timeoutMs: 30_000, what: "a clean health report" },
  );
  assert.equal(healed.nodes[victim]?.state, "ok");
  assert.equal(healed.nodes[victim]?.objects, mine.length);
  assert.ok(healed.repairs.copied - totalsBefore.copied >= mine.length, JSON.stringify(healed.repairs));
  assert.ok(healed.repairs.deleted - totalsBefore.deleted >= tombstones.length);
  const stats = (await (await fetch(`${cluster.coordinatorUrl(1)}/stats`)).json()) as CoordinatorStats;
  assert.equal(stats.under_replicated_files, 0);
  const statUp = await statOf(`${probe.shard}:${probe.key}`);
  assert.deepEqual(
    statUp.nodes.map((n) => n.holds),
    SHARDS[probe.shard]!.map(() => "holds"),
  );
});

void test("a byte flipped in a stored body on one node is found when it restarts and restored from its peer, without a client read", async () => {
  const files = await uploadFiles("rotten/", 40);
  await cluster.waitDrained(60_000);
  await waitAllHeld(files, 30_000);
  const before = await listAll();
  const victim = "3";
  const logFrom = cluster.replicator.stderr.length;
  await killNode(victim);
  // Any current record of the node: one of this test's files or an earlier test's.
  const flipped = await cluster.flipByte(victim, Math.random);
  assert.ok(flipped, "a stored body to damage");
  await cluster.restart({ role: "node", id: victim });

  // Nothing reads the file: the node finds the damage itself (recovery, or the scrub) and repair restores it.
  await waitFor(() => repairLogTotals(cluster.replicator.stderr.slice(logFrom)).restored >= 1, {
    timeoutMs: 30_000,
    intervalMs: 250,
    what: `repair to restore ${flipped.key} on node ${victim}`,
  });
  const listed = await waitFor(
    async () => {
      const all = await listAll();
      return SERVERS.every((s) => isDeepStrictEqual(all.get(s), before.get(s))) ? all : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 250, what: "every node to list what it listed before the damage" },
  );
  assert.equal(listed.get(victim)!.filter((e) => e.damaged).length, 0, "nothing left damaged");
  const peer = SHARDS["2"]!.find((s) => s !== victim)!;
  const restored = await fromNode(victim, flipped.key);
  assert.equal(restored.status, 200, `GET ${flipped.key} from node ${victim}`);
  assert.ok(restored.body.equals((await fromNode(peer, flipped.key)).body), "restored byte-exact");
  await waitAllHeld(files, 10_000);
  const totals = repairLogTotals(cluster.replicator.stderr.slice(logFrom));
  assert.deepEqual(totals, { copied: 0, deleted: 0, restored: 1, failed: 0 }, "one restore, nothing else");
  await assertCleanComparisonSince(Date.now());
});

void test("a byte flipped in a record's key on one node: neither the node nor a coordinator serves the key's previous version or a deleted file meanwhile", async () => {
  const shard = "2";
  const victim = "3";
  // Through coordinator 1 only: coordinator 2 remembers none of these acknowledgements.
  const onShard2 = async (key: string, body: Buffer): Promise<void> => {
    for (let attempt = 0; attempt < 30; attempt++) if ((await put(key, body, 1)) === shard) return;
    throw new Error(`30 uploads of ${key}, none on shard ${shard}`);
  };
  const v1 = randomBytes(3000);
  const v2 = randomBytes(3100);
  await onShard2("header/overwritten", v1);
  await cluster.waitDrained(60_000);
  await onShard2("header/overwritten", v2);
  await onShard2("header/deleted", randomBytes(3200));
  await cluster.waitDrained(60_000);
  const del = await fetch(`${cluster.coordinatorUrl(1)}/${shard}:header/deleted`, { method: "DELETE" });
  assert.equal(del.status, 204);
  // Neither damaged record is the last of its volume (a damaged tail is cut off as a torn write).
  await onShard2("header/after", randomBytes(100));
  await cluster.waitDrained(60_000);
  for (const s of SHARDS[shard]!) {
    assert.ok((await fromNode(s, "header/overwritten")).body.equals(v2));
    assert.equal((await fromNode(s, "header/deleted")).status, 404);
  }

  await killNode(victim);
  assert.ok(await cluster.flipKeyByte(victim, "header/overwritten"), "v2's record damaged");
  assert.ok(await cluster.flipKeyByte(victim, "header/deleted"), "the tombstone damaged");
  await cluster.restart({ role: "node", id: victim });
  // Read at once (repair compares every 2 s): what clients could get meanwhile.
  const served: string[] = [];
  const overwritten = await fromNode(victim, "header/overwritten");
  if (overwritten.status === 200 && overwritten.body.equals(v1)) served.push(`node ${victim} served v1`);
  if ((await fromNode(victim, "header/deleted")).status === 200)
    served.push(`node ${victim} served the deleted file`);
  for (let i = 0; i < 4; i++) {
    const o = await fetch(`${cluster.coordinatorUrl(2)}/${shard}:header/overwritten`);
    if (Buffer.from(await o.arrayBuffer()).equals(v1)) served.push("coordinator 2 served v1");
    const d = await fetch(`${cluster.coordinatorUrl(2)}/${shard}:header/deleted`);
    await d.arrayBuffer();
    if (d.status === 200) served.push("coordinator 2 served the deleted file");
  }

  // Repair heals it all the same (checked first, so that the next tests start from healed replicas).
  await waitFor(
    async () =>
      (await fromNode(victim, "header/overwritten")).body.equals(v2) &&
      (await fromNode(victim, "header/deleted")).status === 404,
    { timeoutMs: 30_000, intervalMs: 250, what: `node ${victim} repaired` },
  );
  await assertCleanComparisonSince(Date.now());
  assert.deepEqual(served, [], "older data served after the damage, before repair");
});

void test("a delete and an overwrite made while a node was down, their tasks lost with the queue, reach it through repair", async () => {
  const shard = "2";
  const [a, b] = SHARDS[shard] as [string, string];
  // Two files on shard 2 (uploads the coordinators put on shard 1 are kept and checked as well).
  const files: StoredFile[] = [];
  const onShard = async (keyOf: (attempt: number) => string, body: Buffer): Promise<StoredFile> => {
    for (let attempt = 0; attempt < 30; attempt++) {
      const key = keyOf(attempt);
      const f = { key, body, shard: await put(key, body) };
      files.push(f);
      if (f.shard === shard) return f;
    }
    throw new Error(`30 uploads of ${keyOf(0)}, none on shard ${shard}`);
  };
  const doomed = await onShard((i) => `missed/deleted-${i}`, randomBytes(5000));
  const overwritten = await onShard((i) => `missed/overwritten-${i}`, randomBytes(6000));
  await cluster.waitDrained(60_000);
  await waitAllHeld(files, 30_000);

  const logFrom = cluster.replicator.stderr.length;
  await killNode(b);
  const del = await fetch(`${cluster.coordinatorUrl(1)}/${shard}:${doomed.key}`, { method: "DELETE" });
  assert.equal(del.status, 204, await del.text());
  assert.equal(del.headers.get("x-backpack-queued"), b, "the delete for the node that is down was queued");
  const deletedVersion = del.headers.get("x-backpack-version");
  assert.ok(deletedVersion, "the delete's version");
  // The same key until it lands on shard 2 again (an upload on shard 1 is another address, kept and checked).
  const newer = await onShard(() => overwritten.key, randomBytes(7000));
  const live = files.filter((f) => f !== doomed && !(f.shard === shard && f.key === overwritten.key));
  live.push(newer);
  const queued = await cluster.queueCounts();
  assert.ok(
    queued.every((c) => c !== undefined && c.tasks >= 2),
    `the delete and the copy are queued: ${JSON.stringify(queued)}`,
  );
  await cluster.flushQueue();
  assert.deepEqual(await cluster.queueCounts(), [
    { tasks: 0, dead: 0 },
    { tasks: 0, dead: 0 },
  ]);
  await cluster.restart({ role: "node", id: b });

  await waitFor(
    async () => {
      for (const s of SERVERS) if ((await fromNode(s, doomed.key)).status !== 404) return false;
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 250, what: `${doomed.key} to be 404 on every node` },
  );
  await waitAllHeld(live, 30_000);
  const fixedAt = Date.now();
  // The node that was down holds the delete itself (a tombstone of the acknowledged version), and the newer
  // content under the newer version.
  const listed = await listNode(cluster.nodeUrl(b));
  assert.deepEqual(listed.get(doomed.key), (await listNode(cluster.nodeUrl(a))).get(doomed.key));
  assert.equal(listed.get(doomed.key)?.deleted, true);
  assert.equal(listed.get(doomed.key)?.version, deletedVersion);
  const read = await fetch(`${cluster.coordinatorUrl(2)}/${shard}:${overwritten.key}`);
  assert.equal(read.status, 200);
  assert.ok(
    Buffer.from(await read.arrayBuffer()).equals(newer.body),
    "the coordinator serves the newer content",
  );
  assert.equal((await fetch(`${cluster.coordinatorUrl(2)}/${shard}:${doomed.key}`)).status, 404);
  const totals = repairLogTotals(cluster.replicator.stderr.slice(logFrom));
  assert.ok(totals.deleted >= 1 && totals.copied >= 1, `repair: ${JSON.stringify(totals)}`);
  await assertCleanComparisonSince(fixedAt);
});

void test("copies lost with the whole queue (FLUSHALL while the replicator is frozen) are restored by repair", async () => {
  const replicator = cluster.replicator;
  replicator.pause();
  let files: StoredFile[];
  try {
    // Written the original's way (one node, copies queued), fewer than the coordinators' backlog limit (100
    // copies due), so no upload waits for the frozen replicator.
    files = await uploadFiles("flushed/", 80, { "x-backpack-replicas": "one" });
    for (const f of files)
      assert.equal((await holders(f)).length, 1, `${f.shard}:${f.key} is on one node only`);
    // Every Redis server holds every task (docs/queue.md).
    const queued = await cluster.queueCounts();
    assert.ok(
      queued.every((c) => c?.tasks === files.length),
      `a copy task per file on each Redis server: ${JSON.stringify(queued)}`,
    );
    await cluster.flushQueue();
  } finally {
    replicator.resume();
  }
  const logFrom = replicator.stderr.length;
  await waitAllHeld(files, 60_000);
  const fixedAt = Date.now();
  assert.ok(replicator.running, `the replicator runs: ${replicator.stderr.slice(-2000)}`);
  const totals = repairLogTotals(replicator.stderr.slice(logFrom));
  assert.ok(totals.copied >= files.length, `repair copied ${totals.copied} of ${files.length}`);
  await assertCleanComparisonSince(fixedAt);
});
