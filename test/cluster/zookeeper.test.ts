import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import type { ClusterMapTarget } from "../../src/cluster/open.js";
import { runBin } from "../helpers/process.js";
import { freePort, waitFor } from "../helpers/wait.js";
import { fourLetterWord, startEnsemble, startZooKeeper } from "../helpers/zookeeper.js";
import { clusterMapSuite, openStarted } from "./cluster-map-suite.js";
import { runUsageWorker, startWatcher, waitForSnapshot } from "./worker.js";
import { rawZk } from "./zk-raw.js";

// One standalone server for the whole file; tests in a file run one after the other, each under its own root.
const zk = await startZooKeeper({ after });
let roots = 0;
const freshRoot = (): string => `/test-${++roots}`;

clusterMapSuite("zookeeper", {
  async target() {
    return { zk: zk.connectString, root: freshRoot() };
  },
});

const GB100 = 100 * 1024 ** 3;

void describe("zookeeper cluster map", () => {
  void it("reads and updates a cluster written by the original tools, keeping its layout", async (t) => {
    const raw = await rawZk(t, zk.connectString);
    const root = freshRoot();
    await raw.set(
      `${root}/servers-map`,
      '{"1":{"host":"one","port":"10001"},"4":{"host":"two","port":"10004"}}',
    );
    await raw.set(`${root}/shards-map`, '{"1":{"nodes":["1","4"]},"2":{"nodes":["2","9"],"read_only":true}}');
    await raw.set(`${root}/shard-size-1`, `{"capacity":${GB100},"current":1000}`);
    // The original's chunked-upload bug left null here.
    await raw.set(`${root}/shard-size-2`, `{"capacity":${GB100},"current":null}`);
    await raw.set(`${root}/queue`, '{"key":"backpack-queue","servers":[{"host":"one","port":"13001"}]}');
    const map = await openStarted(t, { zk: zk.connectString, root });
    const s = map.snapshot();
    assert.equal(s.initialized, true);
    assert.deepEqual(s.servers["4"], { id: "4", url: "http://two:10004" });
    assert.deepEqual(s.shards["1"], {
      id: "1",
      servers: ["1", "4"],
      enabled: true,
      capacity: GB100,
      used: 1000,
    });
    assert.deepEqual(s.shards["2"], {
      id: "2",
      servers: ["2", "9"],
      enabled: false,
      capacity: GB100,
      used: 0,
    });
    assert.deepEqual(s.queue, { key: "backpack-queue", servers: [{ host: "one", port: 13001 }] });

    await map.addUsage({ 1: 24, 2: 5 });
    assert.equal(await raw.get(`${root}/shard-size-1`), `{"capacity":${GB100},"current":1024}`);
    assert.equal(await raw.get(`${root}/shard-size-2`), `{"capacity":${GB100},"current":5}`);
    // Garbage in a size znode: usage restarts from 0, never NaN or null.
    await raw.set(`${root}/shard-size-2`, "garbage");
    await waitFor(() => map.snapshot().shards["2"]?.used === 0, { what: "garbage read as 0" });
    await map.addUsage({ 2: 7 });
    assert.equal(
      (JSON.parse((await raw.get(`${root}/shard-size-2`)) ?? "") as { current: number }).current,
      7,
    );

    // Shard 2 names server 9, which is not registered: enabling is refused, nothing changes.
    const before = await raw.tree(root);
    await assert.rejects(map.setShardEnabled("2", true), /server 2, 9 is not registered/);
    assert.deepEqual(await raw.tree(root), before);
    await map.setShardEnabled("1", false);
    assert.equal(
      await raw.get(`${root}/shards-map`),
      JSON.stringify({
        1: { nodes: ["1", "4"], read_only: true },
        2: { nodes: ["2", "9"], read_only: true },
      }),
    );
    await map.setShardEnabled("1", true);
    assert.deepEqual(
      (JSON.parse((await raw.get(`${root}/shards-map`)) ?? "") as Record<string, unknown>)["1"],
      { nodes: ["1", "4"] },
    );
    await map.addServer("5", "https://two:10005");
    assert.deepEqual(
      (JSON.parse((await raw.get(`${root}/servers-map`)) ?? "") as Record<string, unknown>)["5"],
      {
        host: "two",
        port: "10005",
        scheme: "https",
      },
    );
  });

  void it("runs the seed's walkthrough verbatim; its third add-shard is refused", async (t) => {
    const z = zk.connectString;
    const bin = (name: string, ...args: string[]) =>
      runBin(`backpack-coordinator-${name}`, [z, "/backpack", ...args]);
    let r = await bin("init", "backpack-queue", "one:13001,two:13002");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "Servers map initialized\nShards map initialized\nQueue initialized\n");
    // Six add-server commands at once: concurrent writers on /servers-map, none may be lost.
    const servers = [
      ["1", "http://one:10001"],
      ["2", "http://one:10002"],
      ["3", "http://one:10003"],
      ["4", "http://two:10004"],
      ["5", "http://two:10005"],
      ["6", "http://two:10006"],
    ];
    for (const res of await Promise.all(servers.map(([id, url]) => bin("add-server", id!, url!)))) {
      assert.equal(res.code, 0, res.stderr);
    }
    r = await bin("add-shard", "1", "1,4", "100gb");
    assert.equal(r.code, 0, r.stderr);
    r = await bin("add-shard", "2", "2,5", "100gb");
    assert.equal(r.code, 0, r.stderr);
    r = await bin("add-shard", "1", "3,6", "100gb");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /already exists as shard 1 \[1, 4\] \(100gb, read-only\)/);
    r = await bin("enable-shard", "1");
    assert.equal(r.code, 0, r.stderr);
    r = await bin("print-stats");
    assert.equal(
      r.stdout,
      "1 [1, 4]: 0b / 100gb (0%) rw\n2 [2, 5]: 0b / 100gb (0%) ro\nOverall: 0b / 200gb (0%), 1 of 2 shards writable\n",
    );
    r = await bin("init", "backpack-queue", "one:13001,two:13002");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Servers map already exists/);

    const raw = await rawZk(t, z);
    const tree = await raw.tree("/backpack");
    assert.deepEqual(JSON.parse(tree["servers-map"] ?? ""), {
      1: { host: "one", port: "10001" },
      2: { host: "one", port: "10002" },
      3: { host: "one", port: "10003" },
      4: { host: "two", port: "10004" },
      5: { host: "two", port: "10005" },
      6: { host: "two", port: "10006" },
    });
    assert.deepEqual(JSON.parse(tree["shards-map"] ?? ""), {
      1: { nodes: ["1", "4"] },
      2: { nodes: ["2", "5"], read_only: true },
    });
    assert.equal(tree["shard-size-1"], `{"capacity":${GB100},"current":0}`);
    assert.equal(
      tree.queue,
      '{"key":"backpack-queue","servers":[{"host":"one","port":"13001"},{"host":"two","port":"13002"}]}',
    );
    assert.equal(tree["shard-size-3"], undefined);

    r = await runBin("backpack", ["admin", "dump-shards", "--zk", z, "--root", "/backpack", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const dump = JSON.parse(r.stdout) as { shards: { id: string; servers: { url: string }[] }[] };
    assert.deepEqual(
      dump.shards.map((s) => [s.id, s.servers.map((x) => x.url)]),
      [
        ["1", ["http://one:10001", "http://two:10004"]],
        ["2", ["http://one:10002", "http://two:10005"]],
      ],
    );
  });

  void it("refuses bad input with exit 2 or 1 and a clear message, leaving ZooKeeper unchanged", async (t) => {
    const z = zk.connectString;
    const root = freshRoot();
    const map = await openStarted(t, { zk: z, root });
    await map.init({ key: "q", servers: [{ host: "one", port: 13001 }] });
    for (const id of ["1", "2", "3", "4"]) await map.addServer(id, `http://h:1000${id}`);
    await map.addShard("1", ["1", "4"], 1000);
    await map.addUsage({ 1: 10 });
    const raw = await rawZk(t, z);
    const before = await raw.tree(root);
    const closedPort = await freePort();
    const cases: [string[], number, RegExp][] = [
      [["backpack-coordinator-add-shard", z, root, "2", "2,3"], 2, /missing <capacity>/],
      [["backpack-coordinator-add-shard", z, root, "2", "2,3", "100 gigs"], 2, /not a size/],
      [["backpack-coordinator-add-shard", z, root, "2", "2,3", "0"], 2, /greater than 0/],
      [["backpack-coordinator-add-shard", z, root, "2", "2,3", "--", "-1"], 2, /not a size/],
      [["backpack-coordinator-add-shard", z, root, "2", "2,2", "1gb"], 2, /listed twice/],
      [["backpack-coordinator-add-shard", z, root, "2", "2,9", "1gb"], 1, /unknown server 9/],
      [["backpack-coordinator-add-shard", z, root, "2", "2,4", "1gb"], 1, /already belongs to shard 1/],
      [
        ["backpack-coordinator-add-shard", z, root, "1", "2,3", "1gb"],
        1,
        /already exists as shard 1 \[1, 4\]/,
      ],
      [["backpack-coordinator-add-server", z, root, "5", "ftp://h:1"], 2, /http\(s\)/],
      [["backpack-coordinator-add-server", z, root, "5", "http://h"], 2, /http\(s\):\/\/<host>:<port>/],
      [["backpack-coordinator-add-server", z, root, "5", "http://h:1/path"], 2, /not valid/],
      [["backpack-coordinator-enable-shard", z, root, "7"], 1, /unknown shard 7/],
      [["backpack-coordinator-set-shard-servers", z, root, "1", "1,2"], 1, /holds 10b.*--force/],
      [["backpack-coordinator-set-queue", z, root, "q", "one"], 2, /host:port/],
      [
        ["backpack-coordinator-add-server", z, "/never-initialised", "5", "http://h:1"],
        1,
        /not initialised.*backpack-coordinator-init/,
      ],
      // Unreachable: the message names the connection string and the bounded wait (7 s, under the 10 s asked).
      [
        ["backpack-coordinator-dump-shards", `127.0.0.1:${closedPort}`, root],
        1,
        new RegExp(`cannot reach ZooKeeper at 127.0.0.1:${closedPort} \\(waited 7 s\\)`),
      ],
    ];
    const results = await Promise.all(
      cases.map(async ([[name, ...args], code, message]) => {
        const res = await runBin(name!, args);
        return { name, args, code, message, res };
      }),
    );
    for (const { name, args, code, message, res } of results) {
      const what = `${name} ${args.join(" ")}: ${res.stderr}`;
      assert.equal(res.code, code, what);
      assert.match(res.stderr, message, what);
    }
    assert.deepEqual(await raw.tree(root), before);
    assert.equal(await raw.get("/never-initialised/servers-map"), undefined);
  });

  void it("loses no usage update between processes, and a watcher process sees the total", async (t) => {
    const target: ClusterMapTarget = { zk: zk.connectString, root: freshRoot() };
    const map = await openStarted(t, target);
    await map.init({ key: "q", servers: [{ host: "one", port: 1 }] });
    await map.addServer("1", "http://one:10001");
    await map.addShard("1", ["1"], 1_000_000);
    const watcher = await startWatcher(t, target);
    await Promise.all([
      runUsageWorker(t, target, "1", 30),
      runUsageWorker(t, target, "1", 30),
      map.addUsage({ 1: 40 }),
    ]);
    await waitForSnapshot(watcher, (s) => s.shards["1"]?.used === 100, "the watcher to see 100 bytes used");
  });

  void it("keeps serving the last map through a ZooKeeper restart, then re-reads and re-watches", async (t) => {
    const target: ClusterMapTarget = { zk: zk.connectString, root: freshRoot() };
    const writer = await openStarted(t, target);
    await writer.init({ key: "q", servers: [{ host: "one", port: 1 }] });
    await writer.addServer("1", "http://one:10001");
    const reader = await openStarted(t, target);
    await zk.stop();
    await waitFor(() => !reader.connected, { what: "the reader to notice the outage" });
    assert.equal(reader.snapshot().servers["1"]?.url, "http://one:10001");
    await zk.start();
    await waitFor(() => reader.connected && writer.connected, {
      what: "both maps to reconnect",
      timeoutMs: 20_000,
    });
    await writer.addServer("2", "http://one:10002");
    await waitFor(() => reader.snapshot().servers["2"], {
      what: "the reader to see server 2 after the restart",
    });
    await writer.addServer("3", "http://one:10003");
    await waitFor(() => reader.snapshot().servers["3"], { what: "the watch to be re-armed" });
  });

  void it("rebuilds an expired session in a watcher process frozen past its session timeout", async (t) => {
    const target: ClusterMapTarget = { zk: zk.connectString, root: freshRoot() };
    const writer = await openStarted(t, target);
    await writer.init({ key: "q", servers: [{ host: "one", port: 1 }] });
    const watcher = await startWatcher(t, target);
    await writer.addServer("1", "http://one:10001");
    await waitForSnapshot(watcher, (s) => Boolean(s.servers["1"]), "the watcher to see server 1");
    const session = /"session":"0*([0-9a-f]+)"/.exec(watcher.child.stderr)?.[1];
    assert.ok(session, watcher.child.stderr);
    watcher.child.proc?.kill("SIGSTOP");
    t.after(() => watcher.child.proc?.kill("SIGCONT"));
    // The server expires the session (2 s) and closes its connection: wait until it is gone from `cons`.
    await waitFor(async () => !(await fourLetterWord(zk.port, "cons")).includes(`sid=0x${session}`), {
      what: "the server to expire the frozen watcher's session",
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    await writer.addServer("2", "http://one:10002");
    watcher.child.proc?.kill("SIGCONT");
    await waitForSnapshot(
      watcher,
      (s) => Boolean(s.servers["2"]),
      "the watcher to see server 2 in a new session",
    );
    assert.match(watcher.child.stderr, /session expired/);
    await writer.addServer("3", "http://one:10003");
    await waitForSnapshot(watcher, (s) => Boolean(s.servers["3"]), "the watcher's new watches to fire");
  });
});

void describe("zookeeper ensemble", () => {
  void it("commands succeed while the leader is killed, once a new leader is up", async (t) => {
    const ensemble = await startEnsemble(t, 3);
    const z = ensemble.connectString;
    const root = "/backpack";
    let r = await runBin("backpack-coordinator-init", [z, root, "backpack-queue", "one:13001"]);
    assert.equal(r.code, 0, r.stderr);
    const reader = await openStarted(t, { zk: z, root });
    const ids = ["1", "2", "3", "4", "5", "6"];
    let killed: Promise<void> | undefined;
    for (const id of ids) {
      r = await runBin("backpack-coordinator-add-server", [z, root, id, `http://one:1000${id}`]);
      assert.equal(r.code, 0, `add-server ${id}: ${r.stderr}`);
      // Kill the leader while the next commands run.
      if (id === "2") killed = ensemble.killLeader().then(() => undefined);
    }
    await killed;
    // A client connected before the kill keeps its session and can change the map too.
    await reader.addServer("7", "http://two:10007");
    r = await runBin("backpack-coordinator-add-shard", [z, root, "1", "1,4", "100gb"]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(
      () => reader.snapshot().shards["1"] && Object.keys(reader.snapshot().servers).length === 7,
      {
        what: "a client of the ensemble to see every change",
        timeoutMs: 20_000,
      },
    );
  });
});
