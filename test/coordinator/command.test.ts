import { test } from "node:test";
import assert from "node:assert/strict";
import { EmbeddedClusterMap } from "../../src/cluster/embedded.js";
import { runBin } from "../helpers/process.js";
import { ProcCluster, upload } from "./proc-cluster.js";

void test("backpack-coordinator: wrong arguments print the usage and exit 2; --help exits 0", async () => {
  for (const args of [
    [],
    ["zk:1", "/r"],
    ["zk:1", "/r", "127.0.0.1", "port"],
    ["zk:1", "/r", "h", "1", "--max-body", "lots"],
  ]) {
    const r = await runBin("backpack-coordinator", args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /Usage: backpack-coordinator <zk> <root> <host> <port>/);
  }
  const help = await runBin("backpack", ["coordinator", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Exit codes/);
  const nginx = await runBin("backpack-coordinator-nginx-config", ["file:/nonexistent", "/", "--watch"]);
  assert.equal(nginx.code, 2);
  assert.match(nginx.stderr, /--watch needs --output/);
});

void test("backpack-coordinator on an embedded map: serves, and on SIGTERM writes pending usage and exits 0", async (t) => {
  const c = await ProcCluster.create(t);
  await c.startNode("1");
  const map = new EmbeddedClusterMap({ file: c.zk.slice("file:".length), pollIntervalMs: 50 });
  await map.start();
  t.after(() => map.stop());
  await map.init({ key: "file:/unused", servers: [] });
  await map.addServer("1", c.nodeUrls.get("1") as string);
  await map.addShard("1", ["1"], 1000);
  await map.setShardEnabled("1", true);
  // Usage would not be flushed for an hour: only the stop can write it.
  const coordinator = await c.startCoordinator(["--usage-flush", "1h"]);
  const r = await upload(coordinator.url, "a.txt", "0123456789");
  assert.deepEqual(r, { status: 200, json: { shard_id: "1" }, queued: null });
  assert.equal(await coordinator.kill("SIGTERM"), 0);
  const fresh = new EmbeddedClusterMap({ file: c.zk.slice("file:".length) });
  await fresh.start();
  t.after(() => fresh.stop());
  assert.equal(fresh.snapshot().shards["1"]?.used, 10);
  // The nginx config of that map, printed.
  const conf = await runBin("backpack-coordinator-nginx-config", [c.zk, "/", "--listen", "127.0.0.1:8080"]);
  assert.equal(conf.code, 0, conf.stderr);
  assert.match(conf.stdout, /upstream backpack-shard-1 \{\n {4}server 127\.0\.0\.1:\d+ max_fails=0;/);
  assert.match(conf.stdout, /listen 127\.0\.0\.1:8080;/);
});
