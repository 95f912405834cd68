import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { test, type TestContext } from "node:test";
import { formatBytes } from "../../src/common/units.js";
import { startNginx } from "../helpers/nginx.js";
import { runBin, startProcess, type ChildHandle } from "../helpers/process.js";
import { startRedisServers } from "../helpers/redis.js";
import { tempDir } from "../helpers/tmp.js";
import { freePort, waitFor } from "../helpers/wait.js";
import { startZooKeeper } from "../helpers/zookeeper.js";

/**
 * The distributed deployment as an operator sets it up from the seed's walkthrough, every part a real process:
 * ZooKeeper, two Redis servers, 6 storage nodes, 2 coordinators, 2 replicators and nginx in front, configured
 * with the admin commands. Then a storage node is SIGKILLed while uploads go on: nothing answered 200 is lost,
 * reads fail over, and the copies the node missed land on it once it is back.
 */

const ROOT = "/backpack";
const SERVERS = ["1", "2", "3", "4", "5", "6"];
const SHARDS: Record<string, readonly string[]> = { "1": ["1", "4"], "2": ["2", "5"], "3": ["3", "6"] };
const CAPACITY = 100 * 1024 ** 3;

/** A file answered 200 by a coordinator: where it went and what it holds. */
interface Stored {
  shard: string;
  body: Buffer;
  /** Uploaded with `X-Backpack-Replicas: all`: answered only once every node of the shard held it. */
  allReplicas?: boolean;
  /** Uploaded with `X-Backpack-Replicas: one` (the original's way): on one node, its copies queued. */
  oneCopy?: boolean;
}

interface Deployment {
  zk: string;
  nodes: Map<string, ChildHandle>;
  nodeUrls: Map<string, string>;
  coordinators: ChildHandle[];
  replicators: ChildHandle[];
  nginxUrl: string;
}

/** Runs an admin command as typed in the seed (`<zk> <root> ...`); asserts exit 0 and returns stdout. */
async function admin(zk: string, name: string, ...args: string[]): Promise<string> {
  const r = await runBin(name, [zk, ROOT, ...args]);
  assert.equal(r.code, 0, `${name} ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** `curl -X PUT -T file <coordinator>/<key>`. */
async function upload(
  base: string,
  key: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  const res = await fetch(`${base}/${key}`, { method: "PUT", body, headers });
  return { status: res.status, text: await res.text() };
}

/** The shard id of a 200 answer, checked to be the original's `{"shard_id":"<id>"}` with a string id. */
function shardOf(text: string, allReplicas = false): string {
  const json = JSON.parse(text) as Record<string, unknown>;
  assert.equal(typeof json.shard_id, "string", text);
  const shard = json.shard_id as string;
  assert.ok(shard in SHARDS, `an existing shard: ${text}`);
  if (allReplicas) {
    // The receipt of X-Backpack-Replicas: all names the servers that hold the file: all of the shard's.
    assert.deepEqual(Object.keys(json), ["shard_id", "replicas"], text);
    assert.deepEqual([...(json.replicas as string[])].sort(), [...SHARDS[shard]!].sort(), text);
  } else {
    assert.deepEqual(Object.keys(json), ["shard_id"], text);
  }
  return shard;
}

async function fetchBytes(url: string): Promise<{ status: number; body: Buffer }> {
  const res = await fetch(url).catch(() => undefined);
  if (res === undefined) return { status: 0, body: Buffer.alloc(0) };
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

/** HEAD on a storage node: true when it holds `key` with `size` bytes. */
async function nodeHolds(nodeUrl: string, key: string, size: number): Promise<boolean> {
  const res = await fetch(`${nodeUrl}/${key}`, { method: "HEAD" }).catch(() => undefined);
  return res?.status === 200 && res.headers.get("content-length") === String(size);
}

/** The keys of `files` that some node of their shard does not hold yet (all nodes, or only `among`). */
async function missingCopies(
  d: Deployment,
  files: Map<string, Stored>,
  among: readonly string[] = SERVERS,
): Promise<string[]> {
  const missing: string[] = [];
  for (const [key, { shard, body }] of files) {
    for (const id of SHARDS[shard]!) {
      if (!among.includes(id)) continue;
      if (!(await nodeHolds(d.nodeUrls.get(id)!, key, body.length))) missing.push(`${shard}:${key}@${id}`);
    }
  }
  return missing;
}

async function waitReplicated(d: Deployment, files: Map<string, Stored>, what: string): Promise<void> {
  let missing: string[] = [];
  await waitFor(
    async () => {
      missing = await missingCopies(d, files);
      return missing.length === 0;
    },
    { timeoutMs: 60_000, intervalMs: 100, what },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; still missing: ${missing.slice(0, 10).join(" ")}`);
  });
}

/** Every file reads back byte-exact through nginx and through a coordinator (alternating). */
async function assertReadable(d: Deployment, files: Map<string, Stored>, when: string): Promise<void> {
  let i = 0;
  for (const [key, { shard, body }] of files) {
    const coordinator = d.coordinators[i++ % d.coordinators.length]!;
    for (const [via, base] of [
      ["nginx", d.nginxUrl],
      ["coordinator", coordinator.url],
    ] as const) {
      const got = await fetchBytes(`${base}/${shard}:${key}`);
      assert.equal(got.status, 200, `${when}: GET ${shard}:${key} through ${via}`);
      assert.ok(got.body.equals(body), `${when}: ${shard}:${key} through ${via} is byte-exact`);
    }
  }
}

/** Sets up the seed's cluster with its commands, in the seed's order. */
async function deploy(t: TestContext): Promise<Deployment> {
  const [zkServer, redis] = await Promise.all([startZooKeeper(t), startRedisServers(t, 2)]);
  const zk = zkServer.connectString;
  const dir = await tempDir(t, "backpack-e2e-");

  // Storage nodes on fixed ports, so that a restarted node comes back where the servers map says it is.
  const nodes = new Map<string, ChildHandle>();
  const nodeUrls = new Map<string, string>();
  await Promise.all(
    SERVERS.map(async (id) => {
      const port = await freePort();
      // The original's form: backpack <data dir> <listen host> <listen port>.
      const node = await startProcess(t, {
        command: "backpack",
        args: [join(dir, `node-00${id}`), "127.0.0.1", String(port)],
      });
      nodes.set(id, node);
      nodeUrls.set(id, `http://127.0.0.1:${port}`);
    }),
  );

  // $ backpack-coordinator-init one.local:2181 /backpack backpack-queue one:13001,two:13002
  const init = await admin(
    zk,
    "backpack-coordinator-init",
    "backpack-queue",
    redis.map((r) => `${r.host}:${r.port}`).join(","),
  );
  assert.equal(init, "Servers map initialized\nShards map initialized\nQueue initialized\n");

  // $ backpack-coordinator one.local:2181 /backpack one 12001 (and two 12002): before any capacity exists;
  // they follow the map as it grows.
  const coordinators = await Promise.all(
    [0, 1].map(async () =>
      startProcess(t, {
        command: "backpack-coordinator",
        args: [zk, ROOT, "127.0.0.1", String(await freePort())],
      }),
    ),
  );

  for (const id of SERVERS) await admin(zk, "backpack-coordinator-add-server", id, nodeUrls.get(id)!);
  const added = await admin(zk, "backpack-coordinator-add-shard", "1", "1,4", "100gb");
  assert.match(added, /^Shard 1 added: \[1, 4\], 100gb, read-only/);
  await admin(zk, "backpack-coordinator-add-shard", "2", "2,5", "100gb");

  // The seed's third command registers "1" again with other servers (a typo for 3): refused, shard 1 kept.
  const before = await admin(zk, "backpack-coordinator-dump-shards", "--json");
  const typo = await runBin("backpack-coordinator-add-shard", [zk, ROOT, "1", "3,6", "100gb"]);
  assert.equal(typo.code, 1, `the seed's "add-shard 1 3,6" is refused: ${typo.stdout}${typo.stderr}`);
  assert.match(typo.stderr, /cannot add shard 1 with servers \[3, 6\]: it already exists as .*\b1\b.*\b4\b/);
  assert.equal(await admin(zk, "backpack-coordinator-dump-shards", "--json"), before, "shard 1 unchanged");
  const dumped = JSON.parse(before) as { shards: { id: string; servers: { id: string }[] }[] };
  assert.deepEqual(
    dumped.shards.find((s) => s.id === "1")?.servers.map((s) => s.id),
    ["1", "4"],
  );
  await admin(zk, "backpack-coordinator-add-shard", "3", "3,6", "100gb");

  for (const id of Object.keys(SHARDS)) await admin(zk, "backpack-coordinator-enable-shard", id);

  // $ backpack-replicator one.local:2181 /backpack (one per physical server)
  const replicators = await Promise.all(
    [0, 1].map(() => startProcess(t, { command: "backpack-replicator", args: [zk, ROOT] })),
  );

  // nginx in front, with the config generated from the map.
  const nginx = await startNginx(t, async (listen) => {
    const r = await runBin("backpack-coordinator-nginx-config", [zk, ROOT, "--listen", listen]);
    assert.equal(r.code, 0, r.stderr);
    for (const [shard, ids] of Object.entries(SHARDS)) {
      for (const id of ids) assert.ok(r.stdout.includes(new URL(nodeUrls.get(id)!).host), `shard ${shard}`);
    }
    return r.stdout;
  });

  // The coordinators saw the map change (ZooKeeper watches): all three shards writable on both.
  await waitFor(
    async () => {
      for (const c of coordinators) {
        const stats = (await (await fetch(`${c.url}/stats`)).json()) as { writable_shards: number };
        if (stats.writable_shards !== 3) return false;
      }
      return true;
    },
    { timeoutMs: 20_000, what: "both coordinators to see 3 writable shards" },
  );
  return { zk, nodes, nodeUrls, coordinators, replicators, nginxUrl: nginx.url };
}

/**
 * Uploads from `workers` loops per coordinator until stopped, and records every answer: 200s in `ok`; the 503s of
 * `X-Backpack-Replicas: all` uploads that say the file is stored with copies queued (documented: stored and
 * counted) in `storedQueued`; every other answer in `refused`. A failed check inside a loop stops the load and
 * fails the waits.
 */
class Load {
  readonly ok = new Map<string, Stored>();
  /** Keys answered 200 after `mark()`. */
  readonly okAfterMark = new Set<string>();
  readonly storedQueued = new Map<string, Stored & { holding: string[] }>();
  readonly refused: { status: number; text: string }[] = [];
  private marked = false;
  private stopped = false;
  private failure: unknown;
  private readonly done: Promise<unknown>;

  constructor(coordinators: readonly ChildHandle[], workers: number) {
    let n = 0;
    const loop = async (base: string, ci: number, w: number): Promise<void> => {
      while (!this.stopped) {
        const i = n++;
        // Mostly small files, every 10th one 1 MiB: a big upload is likely in flight at the kill.
        const size = i % 10 === 0 ? 1024 * 1024 : 1 + ((i * 7919) % 100_000);
        const key = `load/c${ci}-w${w}/${i}.bin`;
        const body = randomBytes(size);
        // Every 4th upload asks for every replica before the answer, every 4th for one (the original's way),
        // the others for every live one (the default).
        const allReplicas = i % 4 === 3;
        const oneCopy = i % 4 === 1;
        const headers: Record<string, string> = allReplicas
          ? { "x-backpack-replicas": "all" }
          : oneCopy
            ? { "x-backpack-replicas": "one" }
            : {};
        const r = await upload(base, key, body, headers).catch((err: unknown) => ({
          status: 0,
          text: String(err),
        }));
        if (r.status === 200) {
          this.ok.set(key, { shard: shardOf(r.text, allReplicas), body, allReplicas, oneCopy });
          if (this.marked) this.okAfterMark.add(key);
          continue;
        }
        const json = parseJson(r.text);
        if (allReplicas && r.status === 503 && Array.isArray(json?.holding)) {
          const shard = String(json.shard_id);
          assert.ok(shard in SHARDS, r.text);
          this.storedQueued.set(key, { shard, body, allReplicas, holding: json.holding.map(String) });
        } else {
          this.refused.push(r);
        }
      }
    };
    this.done = Promise.all(
      coordinators.flatMap((c, ci) => Array.from({ length: workers }, (_, w) => loop(c.url, ci, w))),
    ).catch((err: unknown) => {
      this.failure = err;
      this.stopped = true;
    });
  }

  mark(): void {
    this.marked = true;
  }

  async okAfter(more: number, what: string): Promise<void> {
    const target = this.ok.size + more;
    await waitFor(
      () => {
        if (this.failure !== undefined) throw this.failure;
        return this.ok.size >= target;
      },
      { timeoutMs: 60_000, what },
    ).catch((err: unknown) => {
      throw this.failure ?? err;
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    if (this.failure !== undefined) throw this.failure;
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

void test("distributed: the seed's walkthrough with ZooKeeper, 2 Redis, nginx, and a node SIGKILLed under load", async (t) => {
  // Where the time goes, in the test's output (no assertion depends on it).
  const started = Date.now();
  const phase = (what: string): void =>
    t.diagnostic(`${((Date.now() - started) / 1000).toFixed(1)} s: ${what}`);
  const d = await deploy(t);
  phase("deployed");
  const files = new Map<string, Stored>();

  // Upload a set of files of a few sizes through both coordinators.
  const sizes = [1, 17, 1000, 4096, 65_537, 300_000, 1024 * 1024, 1024 * 1024 + 7];
  let i = 0;
  for (const size of sizes) {
    for (const [ci, c] of d.coordinators.entries()) {
      const key = `walk/${i++}-${size}.bin`;
      const body = randomBytes(size);
      const r = await upload(c.url, key, body);
      assert.equal(r.status, 200, `PUT ${key} through coordinator ${ci + 1}: ${r.text}`);
      files.set(key, { shard: shardOf(r.text), body });
    }
  }
  // The seed's own example: $ curl -X PUT -T hello.txt http://two:12002/hi.txt
  const hello = Buffer.from("hello, backpack!\n");
  const hi = await upload(d.coordinators[1]!.url, "hi.txt", hello);
  assert.equal(hi.status, 200, hi.text);
  files.set("hi.txt", { shard: shardOf(hi.text), body: hello });
  assert.ok(new Set([...files.values()].map((f) => f.shard)).size > 1, "uploads spread over the shards");

  phase(`${files.size} files uploaded`);
  await waitReplicated(d, files, "every file on every node of its shard");
  phase("replicated");
  await assertReadable(d, files, "all nodes up");
  phase("read back");

  // A node SIGKILLed while uploads go on through both coordinators. Node 1 is first in shard 1's upstream,
  // so every read of shard 1 through nginx has to fail over while it is down.
  const victim = "1";
  const partner = SHARDS["1"]!.find((id) => id !== victim)!;
  const load = new Load(d.coordinators, 2);
  t.after(() => load.stop().catch(() => undefined));
  await load.okAfter(30, "uploads before the kill");
  // The replicators are frozen for a moment first, so that some files answered 200 the original's way are on
  // the victim alone (their copies queued) when it is killed: it must keep every write it acknowledged.
  const okBeforeFreeze = new Set(load.ok.keys());
  for (const r of d.replicators) r.pause();
  await waitFor(
    async () => {
      let alone = 0;
      for (const [key, f] of load.ok) {
        if (okBeforeFreeze.has(key) || f.shard !== "1" || !f.oneCopy) continue;
        if (!(await nodeHolds(d.nodeUrls.get(partner)!, key, f.body.length))) alone++;
      }
      return alone >= 3;
    },
    { timeoutMs: 60_000, intervalMs: 200, what: `three files answered 200 on node ${victim} alone` },
  );
  await d.nodes.get(victim)!.kill("SIGKILL");
  load.mark();
  for (const r of d.replicators) r.resume();
  phase(`node ${victim} killed`);
  await load.okAfter(40, `uploads with node ${victim} down`);
  await load.stop();
  phase("load stopped");
  for (const r of load.refused) {
    // A refusal is allowed only as a clear answer to retry (the client knows it was not stored).
    assert.ok(r.status === 502 || r.status === 503, `a refused upload: ${r.status} ${r.text}`);
    const json = JSON.parse(r.text) as { error?: unknown; code?: unknown };
    assert.ok(typeof json.error === "string" && typeof json.code === "string", r.text);
  }
  for (const [key, f] of load.ok) files.set(key, f);
  // Stored with copies queued (503 to a replicas=all upload): on the nodes it names now, everywhere later.
  for (const [key, f] of load.storedQueued) {
    for (const id of f.holding) {
      if (id !== victim)
        assert.ok(await nodeHolds(d.nodeUrls.get(id)!, key, f.body.length), `${key} on ${id}`);
    }
    files.set(key, f);
  }
  const shard1AfterKill = [...load.okAfterMark].filter((k) => load.ok.get(k)!.shard === "1");
  assert.ok(shard1AfterKill.length > 0, "some uploads went to the shard of the dead node");

  // While the node is down: every file that has a copy on a live node reads back through nginx and the
  // coordinators. Those answered 200 after the kill must all have one (they were written to a live node).
  // Files answered before the kill whose copy to the partner was still queued exist only on the dead node;
  // they may be unreadable now and are checked again below, once it is back.
  const onDeadOnly = new Set<string>();
  for (const [key, f] of files) {
    if (f.shard !== "1") continue;
    if (!(await nodeHolds(d.nodeUrls.get(partner)!, key, f.body.length))) onDeadOnly.add(key);
  }
  assert.ok(onDeadOnly.size >= 3, `files on the dead node only: ${onDeadOnly.size}`);
  for (const key of onDeadOnly) {
    assert.ok(!load.okAfterMark.has(key), `${key}, answered 200 with node ${victim} down, is on a live node`);
    const receipt = load.ok.get(key);
    assert.ok(!receipt?.allReplicas, `${key}, answered 200 with replicas=all, is on every node`);
    assert.ok(
      receipt?.oneCopy,
      `${key}, answered 200 with every live replica written, is on node ${partner}`,
    );
  }
  const allCount = [...load.ok.values()].filter((f) => f.allReplicas).length;
  t.diagnostic(
    `${load.ok.size} uploads answered 200 under load (${load.okAfterMark.size} with node ${victim} down, ` +
      `${shard1AfterKill.length} of them to its shard; ${allCount} with replicas=all), ` +
      `${load.storedQueued.size} stored with copies queued (503), ` +
      `${load.refused.length} refused (${load.refused.map((r) => r.status).join(",")}); ` +
      `${onDeadOnly.size} files were on the dead node only`,
  );
  const readableNow = new Map([...files].filter(([key]) => !onDeadOnly.has(key)));
  await assertReadable(d, readableNow, `node ${victim} down`);
  phase(`${readableNow.size} files read back with node ${victim} down`);

  // The node comes back (same data dir, same port): what it held is still there, and the replicators
  // retry the copies it missed.
  await d.nodes.get(victim)!.start();
  phase(`node ${victim} restarted`);
  // A SIGKILLed node keeps every write it acknowledged: the files it held alone are there at once.
  const heldAlone = new Map([...files].filter(([key]) => onDeadOnly.has(key)));
  const lost = await missingCopies(d, heldAlone, [victim]);
  if (lost.length > 0) {
    // Say what the nodes answer for them, and whether they turn up later (late, not lost), before failing.
    const seen: string[] = [];
    for (const m of lost) {
      const key = m.slice(m.indexOf(":") + 1, m.lastIndexOf("@"));
      const answers = await Promise.all(
        SHARDS["1"]!.map(
          async (id) => `node ${id} ${(await fetchBytes(`${d.nodeUrls.get(id)}/${key}`)).status}`,
        ),
      );
      seen.push(`${m} (${answers.join(", ")})`);
    }
    const later = await waitFor(async () => (await missingCopies(d, heldAlone, [victim])).length === 0, {
      timeoutMs: 15_000,
      what: "them later",
    }).catch(() => false);
    assert.fail(
      `node ${victim} lost acknowledged files it alone held: ${seen.join("; ")}; ` +
        `${later ? "they turned up later" : "still missing 15 s later"}`,
    );
  }
  await waitReplicated(d, files, `the copies node ${victim} missed to land on it`);
  phase("the copies it missed landed");
  // The replicators made those copies, and the queue drains.
  let copies = 0;
  for (const r of d.replicators) {
    copies += ((await (await fetch(`${r.url}/stats`)).json()) as { copies: number }).copies;
  }
  assert.ok(copies > 0, "the replicators made copies");
  await waitFor(
    async () => {
      const st = (await (await fetch(`${d.coordinators[0]!.url}/stats`)).json()) as { queue_length: number };
      return st.queue_length === 0;
    },
    { timeoutMs: 30_000, what: "the replication queue to drain" },
  );
  await assertReadable(d, files, `node ${victim} back`);

  for (const c of d.coordinators) assert.ok(c.running, "the coordinators kept running");
  for (const r of d.replicators) assert.ok(r.running, "the replicators kept running");

  // print-stats shows the usage: exactly the bytes stored (answered 200, or 503 with copies queued), per shard.
  const used: Record<string, number> = { "1": 0, "2": 0, "3": 0 };
  for (const f of files.values()) used[f.shard]! += f.body.length;
  const total = Object.values(used).reduce((a, b) => a + b, 0);
  let shown = "";
  await waitFor(
    async () => {
      shown = await admin(d.zk, "backpack-coordinator-print-stats", "--json");
      const doc = JSON.parse(shown) as { shards: { id: string; used: number }[] };
      return doc.shards.every((s) => s.used === used[s.id]);
    },
    { timeoutMs: 20_000, intervalMs: 200, what: `print-stats to show ${JSON.stringify(used)}` },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; it shows ${shown}`);
  });
  phase("print-stats shows the usage");
  const text = await admin(d.zk, "backpack-coordinator-print-stats");
  const pct = (a: number, b: number): number => Math.floor((a / b) * 100);
  const expected = [
    ...Object.entries(SHARDS).map(
      ([id, ids]) =>
        `${id} [${ids.join(", ")}]: ${formatBytes(used[id]!)} / 100gb (${pct(used[id]!, CAPACITY)}%) rw`,
    ),
    `Overall: ${formatBytes(total)} / 300gb (${pct(total, 3 * CAPACITY)}%), 3 of 3 shards writable`,
    "",
  ].join("\n");
  assert.equal(text, expected);
});
