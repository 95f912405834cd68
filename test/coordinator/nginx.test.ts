import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { EmbeddedClusterMap } from "../../src/cluster/embedded.js";
import { startNginx, type NginxHandle } from "../helpers/nginx.js";
import { runBin, type ChildHandle } from "../helpers/process.js";
import { freePort, waitFor } from "../helpers/wait.js";
import { ProcCluster, upload } from "./proc-cluster.js";

/**
 * The generated nginx front, with Debian's nginx and real node processes: reads with failover, a missing file
 * is 404 even with a node down, writes are 403, and nginx started before its nodes serves as soon as they are up.
 */
async function setup(t: Parameters<typeof ProcCluster.create>[0], ids: string[]) {
  const c = await ProcCluster.create(t);
  const map = new EmbeddedClusterMap({ file: c.zk.slice("file:".length), pollIntervalMs: 50 });
  await map.start();
  t.after(() => map.stop());
  await map.init({ key: "file:" + join(c.dir, "queue"), servers: [] });
  return { c, map, ids };
}

/** Nodes 1 and 2 running as shard 1 (enabled), and a coordinator. */
async function oneShard(t: Parameters<typeof ProcCluster.create>[0]) {
  const { c, map } = await setup(t, ["1", "2"]);
  for (const id of ["1", "2"]) {
    await c.startNode(id);
    await map.addServer(id, c.nodeUrls.get(id) as string);
  }
  await map.addShard("1", ["1", "2"], 1024 ** 3);
  await map.setShardEnabled("1", true);
  return { c, coordinator: await c.startCoordinator() };
}

async function config(zk: string, listen: string): Promise<string> {
  const r = await runBin("backpack-coordinator-nginx-config", [zk, "/", "--listen", listen]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** `backpack-coordinator-nginx-config --watch` keeping nginx's site file current; resolves once it watches. */
function watch(c: ProcCluster, nginx: NginxHandle): Promise<ChildHandle> {
  return c.track({
    command: "backpack-coordinator-nginx-config",
    args: [
      c.zk,
      "/",
      "--listen",
      nginx.listen,
      "--watch",
      "-o",
      nginx.sitePath,
      "--reload-command",
      `kill -HUP ${nginx.proc!.pid}`,
    ],
    ready: /"msg":"watching"/,
  });
}

async function get(url: string, method = "GET"): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { method });
  return { status: res.status, body: await res.text() };
}

void test("nginx: reads fail over, a missing file is 404 with a node down, writes are 403", async (t) => {
  const { c, coordinator } = await oneShard(t);
  // Uploaded as a user does, with backpack put: each file with the type its name says.
  const src = join(c.dir, "upload");
  await mkdir(src);
  await writeFile(join(src, "hello world.txt"), "hello, backpack!\n");
  await writeFile(join(src, "photo.jpg"), Buffer.from([0xff, 0xd8, 0xff, 0xe0]));
  const put = await runBin("backpack", [
    "put",
    src,
    "--prefix",
    "dir/",
    "--replicas",
    "all",
    "--to",
    coordinator.url,
  ]);
  assert.equal(put.code, 0, put.stderr);

  const nginx = await startNginx(t, (listen) => config(c.zk, listen));
  const file = `${nginx.url}/1:dir/hello%20world.txt`;
  for (let i = 0; i < 4; i++) assert.deepEqual(await get(file), { status: 200, body: "hello, backpack!\n" });
  assert.equal((await get(file, "HEAD")).status, 200);
  assert.equal((await fetch(file)).headers.get("content-type"), "text/plain", "nginx serves the stored type");
  assert.equal((await fetch(`${nginx.url}/1:dir/photo.jpg`)).headers.get("content-type"), "image/jpeg");
  assert.equal((await get(`${nginx.url}/1:missing.txt`)).status, 404);
  assert.match((await get(`${nginx.url}/7:missing.txt`)).body, /^\{"error":.*"code":"NOT_FOUND"\}\n$/);
  assert.equal((await get(`${nginx.url}/7:missing.txt`)).status, 404);
  for (const method of ["PUT", "DELETE", "POST"]) {
    const res = await fetch(file, { method, body: method === "DELETE" ? undefined : "x" });
    assert.equal(res.status, 403, method);
  }
  assert.equal((await c.fromNode("1", "dir/hello world.txt")).status, 200, "the 403 deleted nothing");

  await c.nodes.get("1")!.kill("SIGKILL");
  for (let i = 0; i < 6; i++) {
    assert.deepEqual(
      await get(file),
      { status: 200, body: "hello, backpack!\n" },
      `read ${i} with node 1 down`,
    );
    const missing = await get(`${nginx.url}/1:missing-${i}.txt`);
    assert.equal(missing.status, 404, `missing ${i} with node 1 down`);
    assert.equal((JSON.parse(missing.body) as { code: string }).code, "NOT_FOUND");
  }
});

void test("nginx started before its nodes serves as soon as one is up; --watch follows shard changes", async (t) => {
  const { c, map } = await setup(t, ["1", "2", "3"]);
  // Register the nodes' URLs first: nginx gets a config for nodes that are not running yet.
  for (const id of ["1", "2", "3"]) {
    c.nodeUrls.set(id, `http://127.0.0.1:${await freePort()}`);
    await map.addServer(id, c.nodeUrls.get(id) as string);
  }
  await map.addShard("1", ["1", "2"], 1024 ** 3);
  const nginx = await startNginx(t, (listen) => config(c.zk, listen));
  assert.equal((await get(`${nginx.url}/1:early.txt`)).status, 502, "no node is up yet");

  // Start node 2 only, on the port the map names, and put a file on it directly.
  const port2 = new URL(c.nodeUrls.get("2") as string).port;
  await c.track({ command: "backpack", args: [join(c.dir, "node-2"), "127.0.0.1", port2] });
  const put = await fetch(`${c.nodeUrls.get("2")}/early.txt`, { method: "PUT", body: "early" });
  assert.equal(put.status, 201);
  // The very next read is served: no node was locked out by the refused connections before.
  assert.deepEqual(await get(`${nginx.url}/1:early.txt`), { status: 200, body: "early" });
  assert.equal((await get(`${nginx.url}/1:absent.txt`)).status, 404, "404 with node 1 still down");

  // --watch: a new shard appears in the config and nginx is reloaded.
  const watcher = await watch(c, nginx);
  const port3 = new URL(c.nodeUrls.get("3") as string).port;
  await c.track({ command: "backpack", args: [join(c.dir, "node-3"), "127.0.0.1", port3] });
  assert.equal((await fetch(`${c.nodeUrls.get("3")}/late.txt`, { method: "PUT", body: "late" })).status, 201);
  assert.equal((await get(`${nginx.url}/2:late.txt`)).status, 404, "shard 2 is not known yet");
  await map.addShard("2", ["3"], 1024 ** 3);
  await waitFor(async () => (await get(`${nginx.url}/2:late.txt`)).body === "late", {
    what: "nginx to serve the new shard after --watch rewrote its config",
  });
  assert.equal(await watcher.kill("SIGTERM"), 0);
});

void test("nginx-config --watch marks a node the ring holds dead down, and takes it back when it is alive", async (t) => {
  // The coordinator joins the ring through the map's nodes: three members.
  const { c, coordinator } = await oneShard(t);
  const r = await upload(coordinator.url, "kept.txt", "kept", { "x-backpack-replicas": "all" });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  const nginx = await startNginx(t, (listen) => config(c.zk, listen));
  await watch(c, nginx);
  const site = (): Promise<string> => readFile(nginx.sitePath, "utf8");
  const port1 = new URL(c.nodeUrls.get("1")!).port;
  const downLine = new RegExp(`server 127\\.0\\.0\\.1:${port1} max_fails=0 down;`);
  assert.doesNotMatch(await site(), downLine);

  const frozen = c.nodes.get("1")!;
  frozen.pause();
  t.after(() => frozen.resume());
  await waitFor(async () => downLine.test(await site()), {
    timeoutMs: 30_000,
    what: "node 1 marked down in the nginx config",
  });
  // nginx no longer tries the frozen node: every read is served by node 2.
  for (let i = 0; i < 4; i++)
    assert.deepEqual(await get(`${nginx.url}/1:kept.txt`), { status: 200, body: "kept" });

  frozen.resume();
  await waitFor(async () => !downLine.test(await site()), {
    timeoutMs: 30_000,
    what: "node 1 back in the nginx config",
  });
});
