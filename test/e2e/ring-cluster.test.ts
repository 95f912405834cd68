import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { ServiceRingView } from "../../src/ring/service-ring.js";
import { ChaosCluster, SHARDS } from "../helpers/chaos-cluster.js";
import { runBin } from "../helpers/process.js";
import { UploadLoad, type UploadRecord } from "../helpers/upload-load.js";
import { waitFor } from "../helpers/wait.js";

/**
 * The ring inside a distributed cluster of real processes: ZooKeeper, 2 Redis, 4 storage nodes in 2 shards of 2,
 * 2 coordinators and a replicator, each a ring member by default (docs/ring.md). A node frozen (SIGSTOP) or
 * killed (SIGKILL) under uploads through both coordinators: both coordinators hold it down, no upload fails,
 * and once it is back it rejoins and receives the copies it missed. One cluster for the file; tests in order.
 */
const t0 = performance.now();
const clock = (): number => performance.now() - t0;
const hooks = { after: (fn: () => unknown) => after(async () => void (await fn())) };
const cluster = await ChaosCluster.start(hooks, clock);
const SERVERS = Object.values(SHARDS).flat().sort();
const urls = cluster.coordinators.map((c) => c.url);

async function ringOf(url: string): Promise<ServiceRingView> {
  const res = await fetch(`${url}/ring`);
  assert.equal(res.status, 200, `GET ${url}/ring`);
  return (await res.json()) as ServiceRingView;
}

/** The status every coordinator's ring holds of the process at `url`. */
async function statusEverywhere(url: string): Promise<(string | undefined)[]> {
  return Promise.all(urls.map(async (c) => (await ringOf(c)).members.find((m) => m.url === url)?.status));
}

async function suspectEverywhere(server: string): Promise<boolean> {
  for (const c of urls) {
    const stats = (await (await fetch(`${c}/stats`)).json()) as { suspect_servers: string[] };
    if (!stats.suspect_servers.includes(server)) return false;
  }
  return true;
}

/** Waits until every coordinator's ring holds every process of the cluster alive. */
async function waitAllAlive(what: string): Promise<void> {
  await waitFor(
    async () => {
      for (const c of urls) {
        const alive = (await ringOf(c)).members.filter((m) => m.status === "alive");
        if (alive.length !== SERVERS.length + 3) return false;
      }
      return true;
    },
    { timeoutMs: 60_000, intervalMs: 100, what },
  );
}

/** Every upload of `records` answered 200 that went to `shard` is held by `server`, byte for byte. */
async function waitHeld(server: string, records: readonly UploadRecord[], shard: string): Promise<void> {
  const files = records.filter((r) => r.status === 200 && r.shard === shard);
  assert.ok(files.length > 0, `uploads went to shard ${shard}`);
  await cluster.procs.waitHeldBy([server], files[0]!.key, files[0]!.body, 60_000);
  let missing: string[] = [];
  await waitFor(
    async () => {
      missing = [];
      for (const f of files) {
        const got = await cluster.procs.fromNode(server, f.key);
        if (got.status !== 200 || !got.body.equals(f.body)) missing.push(f.key);
      }
      return missing.length === 0;
    },
    { timeoutMs: 60_000, intervalMs: 250, what: `node ${server} to hold every upload of shard ${shard}` },
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; missing ${missing.length}: ${missing.slice(0, 5).join(" ")}`);
  });
}

function shardOf(server: string): string {
  return Object.entries(SHARDS).find(([, s]) => s.includes(server))![0];
}

/** Runs `during` under 8 clients uploading 512-byte files through both coordinators; returns every upload. */
async function underLoad(
  prefix: string,
  during: (load: UploadLoad) => Promise<void>,
): Promise<UploadRecord[]> {
  const load = new UploadLoad(() => urls, { clients: 8, sizeBytes: 512, prefix, clock });
  load.start();
  try {
    await waitFor(() => load.answered(0, Infinity).ok >= 100, { timeoutMs: 30_000, what: "uploads flowing" });
    await during(load);
  } finally {
    await load.stop();
  }
  return load.records;
}

function assertAllOk(records: readonly UploadRecord[], what: string): void {
  const failed = records.filter((r) => r.status !== 200);
  assert.deepEqual(
    failed.map((r) => `${r.key}: ${r.status} ${r.error ?? ""}`),
    [],
    `${what}: ${failed.length} of ${records.length} uploads not answered 200`,
  );
}

void test("every process is a ring member with its role and URL; GET /ring everywhere; backpack status shows them", async () => {
  await waitAllAlive("every process alive in both coordinators' rings");
  const view = await ringOf(urls[0]!);
  const roles = view.members.map((m) => m.role).sort();
  assert.deepEqual(roles, ["coordinator", "coordinator", "node", "node", "node", "node", "replicator"]);
  for (const id of SERVERS) {
    const nodeUrl = cluster.nodeUrl(id);
    assert.equal(view.members.find((m) => m.url === nodeUrl)?.role, "node", `node ${id} in the ring`);
    // Every process answers GET /ring with the same members.
    const own = await ringOf(nodeUrl);
    assert.equal(own.members.find((m) => m.url === nodeUrl)?.status, "alive");
  }
  const rep = await ringOf(cluster.replicator.url);
  assert.equal(rep.members.length, SERVERS.length + 3);
  for (const m of view.members) assert.ok(m.incarnation > 0 && m.id.length > 0, JSON.stringify(m));
  await waitFor(async () => (await ringOf(urls[1]!)).lapMs !== null, {
    what: "a lap time",
    timeoutMs: 30_000,
  });

  const status = await runBin("backpack", ["status", "--to", urls[0]!]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, /^ring: 7 members, 7 alive, 0 suspect, 0 dead, 0 left; lap /m);
  assert.match(status.stdout, new RegExp(`^  node 1 +${cluster.nodeUrl("1")}  alive$`, "m"));
  assert.match(status.stdout, /^ {2}replicator +http:\/\/127\.0\.0\.1:\d+ {2}alive$/m);
});

void test("a node frozen (SIGSTOP) under uploads: both coordinators hold it down, every upload succeeds; thawed, it rejoins and gets its copies", async () => {
  const frozen = "1";
  const nodeUrl = cluster.nodeUrl(frozen);
  const records = await underLoad("frozen-", async (load) => {
    await cluster.freeze(frozen);
    const frozenAt = clock();
    await waitFor(
      async () => (await statusEverywhere(nodeUrl)).every((s) => s === "suspect" || s === "dead"),
      {
        timeoutMs: 30_000,
        what: "both coordinators' rings to hold the frozen node suspect or dead",
      },
    );
    await waitFor(() => suspectEverywhere(frozen), { what: "both coordinators' /stats to list it" });
    // Uploads go on while it is still frozen.
    await waitFor(() => load.answered(frozenAt, Infinity).ok >= 200, {
      timeoutMs: 30_000,
      what: "200 uploads answered after the freeze",
    });
    cluster.thaw(frozen);
  });
  assertAllOk(records, "with a node frozen");
  await waitFor(async () => (await statusEverywhere(nodeUrl)).every((s) => s === "alive"), {
    timeoutMs: 30_000,
    what: "the thawed node alive again in both coordinators' rings",
  });
  await waitHeld(frozen, records, shardOf(frozen));
});

void test("a node SIGKILLed under uploads: both coordinators route around it; restarted, it rejoins and gets its copies", async () => {
  const victim = "3";
  const nodeUrl = cluster.nodeUrl(victim);
  let detectedAt = 0;
  const records = await underLoad("killed-", async (load) => {
    await cluster.kill({ role: "node", id: victim });
    await waitFor(async () => (await statusEverywhere(nodeUrl)).every((s) => s === "dead"), {
      timeoutMs: 30_000,
      what: "both coordinators' rings to hold the killed node dead",
    });
    await waitFor(() => suspectEverywhere(victim), { what: "both coordinators' /stats to list it" });
    detectedAt = clock();
    await waitFor(() => load.answered(detectedAt, Infinity).ok >= 200, {
      timeoutMs: 30_000,
      what: "200 uploads answered after the detection",
    });
    await cluster.restart({ role: "node", id: victim });
    await waitFor(async () => (await statusEverywhere(nodeUrl)).every((s) => s === "alive"), {
      timeoutMs: 30_000,
      what: "the restarted node alive again in both coordinators' rings",
    });
  });
  assertAllOk(
    records.filter((r) => r.startedMs >= detectedAt),
    "after both coordinators held the killed node dead",
  );
  await waitHeld(victim, records, shardOf(victim));
});

void test("a clean stop announces leaving: the others hold the process left, not dead; restarted, it is alive again", async () => {
  const coordinator = cluster.coordinators[1]!;
  const url = coordinator.url;
  assert.equal(await coordinator.kill("SIGTERM"), 0, "the coordinator stopped cleanly");
  await waitFor(async () => (await ringOf(urls[0]!)).members.find((m) => m.url === url)?.status === "left", {
    what: "the stopped coordinator held left",
  });
  await coordinator.start();
  await waitAllAlive("the restarted coordinator alive again");
});

interface AppliedSettings {
  version: number;
  logLevel: string | null;
  appliedAt: number;
}

/** The settings every process of the cluster applied (nodes, coordinators, replicator: their /stats). */
async function appliedEverywhere(): Promise<AppliedSettings[]> {
  const all = [...SERVERS.map((id) => cluster.nodeUrl(id)), ...urls, cluster.replicator.url];
  return Promise.all(
    all.map(
      async (u) => ((await (await fetch(`${u}/stats`)).json()) as { settings: AppliedSettings }).settings,
    ),
  );
}

async function setSettings(...args: string[]): Promise<number> {
  const r = await runBin("backpack-coordinator-set-settings", [
    cluster.zk.connectString,
    "/chaos",
    ...args,
    "--json",
  ]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { version: number }).version;
}

void test("a settings change reaches every process over the ring; a node started after it has it too", async () => {
  const version = await setSettings("--log-level", "debug");
  await waitFor(
    async () => (await appliedEverywhere()).every((s) => s.version === version && s.logLevel === "debug"),
    {
      timeoutMs: 30_000,
      what: `settings version ${version} applied by every process`,
    },
  );
  // Storage nodes do not read the map: theirs came over the ring.
  for (const id of SERVERS) {
    assert.match(
      cluster.procs.nodes.get(id)!.stderr,
      /"via":"ring".*"msg":"runtime settings applied"/,
      `node ${id}`,
    );
  }

  // A node away during the next change catches up once it is back (from a coordinator's /cluster).
  await cluster.kill({ role: "node", id: "2" });
  const next = await setSettings("--log-level", "default");
  await cluster.restart({ role: "node", id: "2" });
  await waitFor(
    async () => (await appliedEverywhere()).every((s) => s.version === next && s.logLevel === null),
    {
      timeoutMs: 30_000,
      what: `settings version ${next} applied by every process, the restarted node too`,
    },
  );
});

/** PUT of a small file; the status, the error code and Retry-After. */
async function putOnce(
  base: string,
  key: string,
): Promise<{ status: number; code?: string; retryAfter: string | null }> {
  const res = await fetch(`${base}/${key}`, { method: "PUT", body: "x" });
  const body = (await res.json()) as { code?: string };
  return { status: res.status, code: body.code, retryAfter: res.headers.get("retry-after") };
}

void test("fleet-wide client limits: a client over its rate across both coordinators is refused by both; a blocked one everywhere", async () => {
  // 10 requests/s for the whole fleet; the client makes 8/s at each coordinator: under the rate at each one,
  // over it in total.
  await setSettings("--client-rate", "10", "--client-burst", "1");
  await waitFor(
    async () => (await appliedEverywhere()).every((s) => (s as { clientRate?: unknown }).clientRate !== null),
    {
      what: "the rate applied everywhere",
    },
  );
  const refused = new Map<string, number>();
  for (let i = 0; i < 40; i++) {
    const tick = new Promise((resolve) => setTimeout(resolve, 125));
    const answers = await Promise.all(urls.map((u) => putOnce(u, `limited-${i}-${u.slice(-5)}`)));
    for (const [j, a] of answers.entries()) {
      if (a.status === 200) continue;
      assert.equal(a.status, 429, JSON.stringify(a));
      assert.equal(a.code, "RATE_LIMITED");
      assert.ok(Number(a.retryAfter) >= 1, `Retry-After ${a.retryAfter}`);
      refused.set(urls[j]!, (refused.get(urls[j]!) ?? 0) + 1);
    }
    await tick;
  }
  assert.equal(refused.size, 2, `both coordinators refused some: ${JSON.stringify([...refused])}`);

  await setSettings("--client-rate", "off", "--block", "127.0.0.1");
  await waitFor(
    async () => (await Promise.all(urls.map((u) => putOnce(u, "blocked")))).every((a) => a.status === 403),
    {
      what: "every coordinator to refuse the blocked client",
    },
  );
  assert.equal((await putOnce(urls[0]!, "blocked")).code, "FORBIDDEN");
  await setSettings("--unblock", "127.0.0.1");
  await waitFor(
    async () => (await Promise.all(urls.map((u) => putOnce(u, "unblocked")))).every((a) => a.status === 200),
    {
      what: "every coordinator to take the client again",
    },
  );
});
