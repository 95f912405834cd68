/**
 * The behaviour every ClusterMap implementation shares, run against the embedded map and the ZooKeeper map.
 * `env.target(t)` gives a fresh, empty map location per test; maps are opened with `openClusterMap`.
 */
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { openClusterMap, type ClusterMapTarget } from "../../src/cluster/open.js";
import { NO_SETTINGS } from "../../src/cluster/settings.js";
import type { ClusterMap, ClusterSnapshot, QueueSettings } from "../../src/cluster/types.js";
import { waitFor } from "../helpers/wait.js";

export interface SuiteEnv {
  target(t: TestContext): Promise<ClusterMapTarget>;
}

const QUEUE: QueueSettings = { key: "backpack-queue", servers: [{ host: "one", port: 13001 }] };

export async function openStarted(t: TestContext, target: ClusterMapTarget): Promise<ClusterMap> {
  const map = openClusterMap(target, { connectTimeoutMs: 10_000 });
  t.after(() => map.stop());
  await map.start();
  return map;
}

/** A map with servers 1-6 registered, as in the seed's walkthrough. */
async function walkthroughMap(t: TestContext, target: ClusterMapTarget): Promise<ClusterMap> {
  const map = await openStarted(t, target);
  await map.init(QUEUE);
  for (const id of ["1", "2", "3"]) await map.addServer(id, `http://one:1000${id}`);
  for (const id of ["4", "5", "6"]) await map.addServer(id, `http://two:1000${id}`);
  return map;
}

async function rejects(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: { code?: string; message?: string }) => {
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message ?? "", message);
    return true;
  });
}

/** The map as seen by a fresh reader (not the local copy of the writer). */
async function freshView(t: TestContext, target: ClusterMapTarget): Promise<ClusterSnapshot> {
  const reader = openClusterMap(target, { connectTimeoutMs: 10_000 });
  await reader.start();
  const snapshot = reader.snapshot();
  await reader.stop();
  void t;
  return snapshot;
}

export function clusterMapSuite(name: string, env: SuiteEnv): void {
  void describe(`ClusterMap contract: ${name}`, () => {
    void it("reports an uninitialised map and refuses changes until init", async (t) => {
      const map = await openStarted(t, await env.target(t));
      assert.equal(map.snapshot().initialized, false);
      assert.equal(map.connected, true);
      await rejects(map.addServer("1", "http://one:10001"), "NOT_INITIALIZED", /backpack-coordinator-init/);
      await rejects(map.addShard("1", ["1"], 100), "NOT_INITIALIZED");
      await rejects(
        map.addUsage({ 1: 10 }).then(() => map.setShardEnabled("1", true)),
        "NOT_INITIALIZED",
      );
    });

    void it("init creates what is missing and never overwrites", async (t) => {
      const map = await openStarted(t, await env.target(t));
      assert.deepEqual(await map.init(QUEUE), { created: { servers: true, shards: true, queue: true } });
      await map.addServer("1", "http://one:10001");
      const other: QueueSettings = { key: "other", servers: [{ host: "x", port: 1 }] };
      assert.deepEqual(await map.init(other), { created: { servers: false, shards: false, queue: false } });
      const s = map.snapshot();
      assert.equal(s.initialized, true);
      assert.deepEqual(s.queue, QUEUE);
      assert.deepEqual(Object.keys(s.servers), ["1"]);
    });

    void it("registers servers and shards; new shards are read-only until enabled", async (t) => {
      const target = await env.target(t);
      const map = await walkthroughMap(t, target);
      assert.deepEqual(await map.addShard("1", ["1", "4"], 100 * 1024 ** 3), { created: true });
      assert.deepEqual(await map.addShard("2", ["2", "5"], 100 * 1024 ** 3), { created: true });
      await map.setShardEnabled("1", true);
      await map.addServer("4", "https://two:10444");
      const s = await freshView(t, target);
      assert.deepEqual(s.shards["1"], {
        id: "1",
        servers: ["1", "4"],
        enabled: true,
        capacity: 100 * 1024 ** 3,
        used: 0,
      });
      assert.equal(s.shards["2"]?.enabled, false);
      assert.equal(s.servers["4"]?.url, "https://two:10444");
      assert.equal(s.servers["1"]?.url, "http://one:10001");
      await map.setShardEnabled("1", false);
      assert.equal((await freshView(t, target)).shards["1"]?.enabled, false);
    });

    void it("refuses bad shards and leaves the map unchanged", async (t) => {
      const target = await env.target(t);
      const map = await walkthroughMap(t, target);
      await map.addShard("1", ["1", "4"], 1000);
      const before = await freshView(t, target);
      // The seed's own walkthrough mistake: re-adding shard 1 with other servers.
      await rejects(map.addShard("1", ["3", "6"], 1000), "CONFLICT", /already exists as shard 1 \[1, 4\]/);
      await rejects(map.addShard("2", ["2", "9"], 1000), "NOT_FOUND", /unknown server 9/);
      await rejects(map.addShard("2", ["2", "2"], 1000), "INVALID_ARGUMENT", /listed twice/);
      await rejects(map.addShard("2", ["2", "4"], 1000), "CONFLICT", /already belongs to shard 1/);
      await rejects(map.addShard("2", ["2", "5"], 0), "INVALID_ARGUMENT");
      await rejects(map.addShard("bad id", ["2"], 10), "INVALID_ARGUMENT");
      await rejects(map.setShardEnabled("7", true), "NOT_FOUND", /unknown shard 7/);
      await rejects(map.setShardServers("7", ["3"]), "NOT_FOUND");
      await rejects(map.addServer("9", "ftp://x:1"), "INVALID_ARGUMENT");
      await rejects(map.addServer("9", "http://x"), "INVALID_ARGUMENT");
      assert.deepEqual(await freshView(t, target), before);
      // The exact same shard again is a no-op; another capacity replaces the capacity.
      assert.deepEqual(await map.addShard("1", ["1", "4"], 1000), { created: false });
      assert.deepEqual(await map.addShard("1", ["1", "4"], 2000), { created: false, previousCapacity: 1000 });
      assert.equal((await freshView(t, target)).shards["1"]?.capacity, 2000);
    });

    void it("changes a shard's servers, refusing to drop one holding data unless forced", async (t) => {
      const target = await env.target(t);
      const map = await walkthroughMap(t, target);
      await map.addShard("1", ["1", "4"], 1000);
      await map.setShardServers("1", ["1", "4", "2"]);
      await map.setShardServers("1", ["1", "4"]);
      await map.addUsage({ 1: 10 });
      await rejects(map.setShardServers("1", ["1", "3"]), "CONFLICT", /holds 10b.*--force/);
      assert.deepEqual((await freshView(t, target)).shards["1"]?.servers, ["1", "4"]);
      await map.setShardServers("1", ["1", "4", "3"]);
      await map.setShardServers("1", ["1", "3"], { force: true });
      assert.deepEqual((await freshView(t, target)).shards["1"]?.servers, ["1", "3"]);
    });

    void it("counts usage, clamped at 0, and drops usage of unknown shards", async (t) => {
      const target = await env.target(t);
      const map = await walkthroughMap(t, target);
      await map.addShard("1", ["1", "4"], 1000);
      await map.addUsage({ 1: 300, 99: 5 });
      await map.addUsage({ 1: -100 });
      assert.equal((await freshView(t, target)).shards["1"]?.used, 200);
      await map.addUsage({ 1: -1000 });
      assert.equal((await freshView(t, target)).shards["1"]?.used, 0);
      await map.addUsage({ 1: Number.NaN });
      assert.equal((await freshView(t, target)).shards["1"]?.used, 0);
    });

    void it("loses no update between two writers", async (t) => {
      const target = await env.target(t);
      const a = await walkthroughMap(t, target);
      await a.addShard("1", ["1", "4"], 10_000);
      const b = await openStarted(t, target);
      const rounds = 25;
      const run = async (map: ClusterMap, offset: number): Promise<void> => {
        for (let i = 0; i < rounds; i++) {
          await Promise.all([
            map.addUsage({ 1: 1 }),
            map.addServer(`s${offset + i}`, `http://h:${1000 + offset + i}`),
          ]);
        }
      };
      await Promise.all([run(a, 0), run(b, 100)]);
      const s = await freshView(t, target);
      assert.equal(s.shards["1"]?.used, 2 * rounds);
      assert.equal(Object.keys(s.servers).length, 6 + 2 * rounds);
    });

    void it("keeps a second reader current through onChange", async (t) => {
      const target = await env.target(t);
      const writer = await walkthroughMap(t, target);
      const reader = await openStarted(t, target);
      const seen: ClusterSnapshot[] = [];
      const unsubscribe = reader.onChange((s) => seen.push(s));
      await writer.addShard("1", ["1", "4"], 1000);
      await waitFor(() => reader.snapshot().shards["1"], { what: "the reader to see shard 1" });
      await writer.setShardEnabled("1", true);
      await waitFor(() => reader.snapshot().shards["1"]?.enabled, {
        what: "the reader to see shard 1 enabled",
      });
      await writer.addUsage({ 1: 42 });
      await waitFor(() => reader.snapshot().shards["1"]?.used === 42, { what: "the reader to see usage" });
      assert.ok(seen.length >= 3, `onChange fired ${seen.length} times`);
      assert.equal(seen.at(-1)?.shards["1"]?.used, 42);
      unsubscribe();
      const count = seen.length;
      await writer.addUsage({ 1: 1 });
      await waitFor(() => reader.snapshot().shards["1"]?.used === 43, { what: "the reader to see usage 43" });
      assert.equal(seen.length, count);
    });

    void it("keeps runtime settings, one version up per change, and a second reader sees them", async (t) => {
      const target = await env.target(t);
      const writer = await walkthroughMap(t, target);
      const reader = await openStarted(t, target);
      assert.deepEqual(writer.snapshot().settings, NO_SETTINGS);
      const first = await writer.setSettings({ logLevel: "debug", block: ["203.0.113.9"] });
      assert.deepEqual(first, {
        version: 1,
        logLevel: "debug",
        clientRate: null,
        blocklist: ["203.0.113.9"],
      });
      const second = await writer.setSettings({
        clientRate: { perSec: 50, burst: 100 },
        unblock: ["203.0.113.9"],
      });
      assert.deepEqual(second, {
        version: 2,
        logLevel: "debug",
        clientRate: { perSec: 50, burst: 100 },
        blocklist: [],
      });
      await waitFor(() => reader.snapshot().settings.version === 2, { what: "the reader to see version 2" });
      assert.deepEqual(reader.snapshot().settings, second);
      await rejects(writer.setSettings({ block: ["not an address"] }), "INVALID_ARGUMENT");
      assert.equal((await freshView(t, target)).settings.version, 2, "a refused change changes nothing");
    });

    void it("stops idempotently", async (t) => {
      const map = await openStarted(t, await env.target(t));
      await map.stop();
      await map.stop();
    });
  });
}
