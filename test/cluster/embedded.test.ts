import assert from "node:assert/strict";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { EmbeddedClusterMap } from "../../src/cluster/embedded.js";
import { runBin } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";
import { clusterMapSuite, openStarted } from "./cluster-map-suite.js";
import { runUsageWorker, startWatcher, waitForSnapshot } from "./worker.js";

clusterMapSuite("embedded", {
  async target(t) {
    return { file: join(await tempDir(t), "cluster.json") };
  },
});

void describe("embedded cluster map", () => {
  void it("stores the original's documents in one file, replaced atomically", async (t) => {
    const dir = await tempDir(t);
    const file = join(dir, "cluster.json");
    const map = await openStarted(t, { file });
    await map.init({ key: "q", servers: [{ host: "one", port: 13001 }] });
    await map.addServer("1", "http://one:10001");
    await map.addShard("1", ["1"], 100);
    const doc = JSON.parse(await readFile(file, "utf8")) as { nodes: Record<string, unknown> };
    assert.deepEqual(doc.nodes["servers-map"], { "1": { host: "one", port: "10001" } });
    assert.deepEqual(doc.nodes["shards-map"], { "1": { nodes: ["1"], read_only: true } });
    assert.deepEqual(doc.nodes["shard-size-1"], { capacity: 100, current: 0 });
    assert.deepEqual(doc.nodes.queue, { key: "q", servers: [{ host: "one", port: "13001" }] });
    // No temp or lock files left behind.
    assert.deepEqual(await readdir(dir), ["cluster.json"]);
  });

  void it("refuses a file that is not a cluster map instead of overwriting it", async (t) => {
    const file = join(await tempDir(t), "cluster.json");
    await writeFile(file, "not json");
    const map = new EmbeddedClusterMap({ file });
    t.after(() => map.stop());
    await assert.rejects(map.start(), /not a backpack cluster map file/);
    assert.equal(await readFile(file, "utf8"), "not json");
  });

  void it("breaks a lock left by a process that died", async (t) => {
    const file = join(await tempDir(t), "cluster.json");
    // Pid 2^22+1 is above Linux's pid_max default: no such process.
    await writeFile(`${file}.lock`, String(4194305));
    const map = await openStarted(t, { file });
    await map.init({ key: "q", servers: [{ host: "one", port: 1 }] });
    assert.equal(map.snapshot().initialized, true);
  });

  void it("loses no update between processes, and a watcher process sees every change", async (t) => {
    const file = join(await tempDir(t), "cluster.json");
    const target = { file };
    const map = await openStarted(t, target);
    await map.init({ key: "q", servers: [{ host: "one", port: 1 }] });
    await map.addServer("1", "http://one:10001");
    await map.addShard("1", ["1"], 1_000_000);
    const watcher = await startWatcher(t, target);
    await Promise.all([
      runUsageWorker(t, target, "1", 40),
      runUsageWorker(t, target, "1", 40),
      map.addUsage({ 1: 20 }),
    ]);
    await waitForSnapshot(watcher, (s) => s.shards["1"]?.used === 100, "the watcher to see 100 bytes used");
    // The in-process map learns about the other processes' writes through its file watch.
    await waitFor(() => map.snapshot().shards["1"]?.used === 100, { what: "the map to see 100 bytes used" });
  });

  void it("runs the admin commands on a file: target", async (t) => {
    const dir = await tempDir(t);
    const zk = `file:${join(dir, "cluster.json")}`;
    let r = await runBin("backpack-coordinator-init", [zk, "/", "q", "127.0.0.1:6379"]);
    assert.equal(r.code, 0, r.stderr);
    r = await runBin("backpack", [
      "admin",
      "add-server",
      "--zk",
      zk,
      "--root",
      "/",
      "--id",
      "1",
      "--url",
      "http://a:1",
    ]);
    assert.equal(r.code, 0, r.stderr);
    r = await runBin("backpack-coordinator-add-shard", [zk, "/", "1", "1", "1kb"]);
    assert.equal(r.code, 0, r.stderr);
    r = await runBin("backpack-coordinator-print-stats", [zk, "/"]);
    assert.equal(r.stdout, "1 [1]: 0b / 1kb (0%) ro\nOverall: 0b / 1kb (0%), 0 of 1 shards writable\n");
  });
});
