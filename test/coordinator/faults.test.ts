import { test } from "node:test";
import assert from "node:assert/strict";
import { openClusterMap } from "../../src/cluster/open.js";
import type { ClusterMap } from "../../src/cluster/types.js";
import { startRedis, type RedisServer } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";
import { startZooKeeper, type ZooKeeperHandle } from "../helpers/zookeeper.js";
import type { ChildHandle } from "../helpers/process.js";
import { ProcCluster, upload } from "./proc-cluster.js";

interface Setup {
  zk: ZooKeeperHandle;
  redis: RedisServer;
  c: ProcCluster;
  map: ClusterMap;
  coordinator: ChildHandle;
}

/** ZooKeeper, Redis, shard 1 on nodes 1 and 2, one coordinator, one replicator: all real processes. */
async function setup(
  t: Parameters<typeof ProcCluster.create>[0],
  coordinatorArgs: string[] = [],
): Promise<Setup> {
  const zk = await startZooKeeper(t);
  const redis = await startRedis(t);
  const c = await ProcCluster.create(t, zk.connectString, "/faults");
  await Promise.all(["1", "2"].map((id) => c.startNode(id)));
  const map = openClusterMap({ zk: zk.connectString, root: "/faults" });
  await map.start();
  t.after(() => map.stop());
  await map.init({ key: "faults-queue", servers: [redis.endpoint] });
  for (const id of ["1", "2"]) await map.addServer(id, c.nodeUrls.get(id) as string);
  await map.addShard("1", ["1", "2"], 1024 ** 3);
  await map.setShardEnabled("1", true);
  const coordinator = await c.startCoordinator(coordinatorArgs);
  await c.startReplicator();
  return { zk, redis, c, map, coordinator };
}

/** Uploads with `workers` loops until stopped; records what every upload was answered. */
class Load {
  readonly ok = new Map<string, Buffer>();
  readonly refused: number[] = [];
  /** Of the uploads answered 200, how many named each server as handed off (`X-Backpack-Queued`). */
  readonly handedOff = new Map<string, number>();
  private stopped = false;
  private readonly done: Promise<void[]>;

  constructor(base: string, workers: number, size: (n: number) => number) {
    let n = 0;
    this.done = Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        while (!this.stopped) {
          const i = n++;
          const key = `load/${w}-${i}.bin`;
          const body = Buffer.alloc(size(i), i % 251);
          const r = await upload(base, key, body).catch(() => ({ status: 0, json: {}, queued: null }));
          if (r.status === 200) this.ok.set(key, body);
          else this.refused.push(r.status);
          for (const s of r.status === 200 ? (r.queued?.split(",") ?? []) : []) {
            this.handedOff.set(s, (this.handedOff.get(s) ?? 0) + 1);
          }
        }
      }),
    );
  }

  /** Waits until `more` further uploads got a 200 that named `server` as handed off. */
  async handedOffAfter(server: string, more: number, what: string): Promise<void> {
    const target = (this.handedOff.get(server) ?? 0) + more;
    await waitFor(() => (this.handedOff.get(server) ?? 0) >= target, { timeoutMs: 60_000, what });
  }

  /** Waits until `more` further uploads got a 200. */
  async okAfter(more: number, what: string): Promise<void> {
    const target = this.ok.size + more;
    await waitFor(() => this.ok.size >= target, { timeoutMs: 60_000, what });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

/** Every upload answered 200 is on every node of the shard, byte for byte (waits for replication). */
async function assertAllReplicated(s: Setup, ok: Map<string, Buffer>): Promise<void> {
  await waitFor(
    async () => {
      const st = (await (await fetch(`${s.coordinator.url}/stats`)).json()) as {
        queue_length: number | null;
      };
      return st.queue_length === 0;
    },
    { timeoutMs: 60_000, what: "the replication queue to drain" },
  );
  for (const [key, body] of ok) await s.c.waitHeldBy(["1", "2"], key, body, 30_000);
}

void test("a node SIGKILLed during uploads: every upload still answered 200 (handed off), copies complete after it returns", async (t) => {
  const s = await setup(t);
  // Mostly small bodies (read whole before they go out), every 8th one of 300 KB (streamed to both nodes).
  const load = new Load(s.coordinator.url, 6, (i) => (i % 8 === 7 ? 300_000 : 100 + ((i * 7919) % 60_000)));
  await load.okAfter(30, "uploads before the kill");
  assert.equal(await s.c.nodes.get("1")!.kill("SIGKILL"), null, "node 1 was killed by the signal");
  await load.handedOffAfter("1", 30, "uploads handing node 1 off while it is down");
  await s.c.nodes.get("1")!.start();
  await load.okAfter(30, "uploads after node 1 came back");
  await load.stop();
  assert.ok(s.coordinator.running, "the coordinator is still running");
  // Writes in flight to the killed node failed; the other node held them and node 1 got a queued copy.
  assert.deepEqual(load.refused, [], "no client saw an error");
  for (const [key, body] of load.ok) {
    const res = await fetch(`${s.coordinator.url}/1:${key}`);
    assert.equal(res.status, 200, key);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(body), `${key} reads back`);
  }
  await assertAllReplicated(s, load.ok);
});

void test("a node frozen (SIGSTOP) during uploads: they wait up to the write timeout, then hand it off; nothing lost", async (t) => {
  const s = await setup(t, ["--write-timeout", "1s"]);
  const load = new Load(s.coordinator.url, 6, (i) => (i % 8 === 7 ? 300_000 : 100 + ((i * 7919) % 60_000)));
  await load.okAfter(30, "uploads before the freeze");
  const frozen = s.c.nodes.get("1")!;
  frozen.pause();
  try {
    await load.handedOffAfter("1", 30, "uploads handing the frozen node off");
  } finally {
    frozen.resume();
  }
  await load.okAfter(30, "uploads after node 1 woke up");
  await load.stop();
  assert.deepEqual(load.refused, [], "no client saw an error");
  await assertAllReplicated(s, load.ok);
});

void test("every node of the shard frozen: no upload is answered 200 while its data is durable nowhere", async (t) => {
  const s = await setup(t, ["--node-timeout", "2s", "--write-timeout", "1s"]);
  assert.equal((await upload(s.coordinator.url, "before.txt", "x")).status, 200);
  const nodes = ["1", "2"].map((id) => s.c.nodes.get(id)!);
  for (const n of nodes) n.pause();
  let answer: Awaited<ReturnType<typeof upload>>;
  try {
    answer = await upload(s.coordinator.url, "frozen.txt", "nowhere yet");
  } finally {
    for (const n of nodes) n.resume();
  }
  assert.equal(answer.status, 503, JSON.stringify(answer.json));
  assert.equal(answer.json.code, "UNAVAILABLE");
});

void test("ZooKeeper and Redis stopped and started under load: uploads go on, nothing lost, usage right", async (t) => {
  const s = await setup(t);
  const load = new Load(s.coordinator.url, 4, (i) => 200 + (i % 1000));
  await load.okAfter(20, "uploads with everything up");
  await s.zk.stop();
  await load.okAfter(20, "uploads with ZooKeeper down");
  await s.redis.kill();
  await load.okAfter(20, "uploads with ZooKeeper and Redis down");
  await s.zk.start();
  await load.okAfter(20, "uploads with Redis down");
  await s.redis.start();
  await load.okAfter(20, "uploads with everything back");
  await load.stop();
  assert.ok(s.coordinator.running, "the coordinator never exited");
  assert.deepEqual(
    load.refused.filter((x) => x !== 503),
    [],
    "with every node up, uploads are never refused but with a clear 503",
  );
  await assertAllReplicated(s, load.ok);
  const total = [...load.ok.values()].reduce((a, b) => a + b.length, 0);
  await waitFor(() => s.map.snapshot().shards["1"]?.used === total, {
    timeoutMs: 60_000,
    what: `usage of shard 1 to reach ${total} bytes`,
  });
});

void test("a coordinator started while ZooKeeper is down waits for it instead of exiting", async (t) => {
  const zk = await startZooKeeper(t);
  const map = openClusterMap({ zk: zk.connectString, root: "/late" });
  await map.start();
  await map.init({ key: "late-queue", servers: [{ host: "127.0.0.1", port: 1 }] });
  await map.stop();
  await zk.stop();
  const c = await ProcCluster.create(t, zk.connectString, "/late");
  const coordinator = await c.track({
    command: "backpack-coordinator",
    args: [zk.connectString, "/late", "127.0.0.1", "0"],
    ready: /cluster map unavailable; retrying/,
    readyTimeoutMs: 60_000,
  });
  assert.ok(coordinator.running);
  await zk.start();
  await waitFor(() => /"msg":"listening"/.test(coordinator.stderr), {
    timeoutMs: 60_000,
    what: "the coordinator to start once ZooKeeper is back",
  });
  const url = /"url":"([^"]+)"/.exec(
    coordinator.stderr.split("\n").find((l) => l.includes('"listening"')) ?? "",
  )?.[1];
  const res = await fetch(`${url}/stats`);
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as { total_shards: number }).total_shards, 0);
});
