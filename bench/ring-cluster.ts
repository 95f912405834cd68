import { spawn } from "node:child_process";
import { cpus, loadavg, totalmem } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { openClusterMap } from "../src/cluster/open.js";
import { ProcCluster } from "../test/coordinator/proc-cluster.js";
import { ChaosCluster, SHARDS } from "../test/helpers/chaos-cluster.js";
import type { ChildHandle } from "../test/helpers/process.js";
import { startRedis } from "../test/helpers/redis.js";
import { UploadLoad } from "../test/helpers/upload-load.js";
import { waitFor } from "../test/helpers/wait.js";
import { startZooKeeper } from "../test/helpers/zookeeper.js";
import { processCpuSeconds } from "./lib/server-process.js";
import { quantile } from "./ring-sim/random.js";

/**
 * `npm run bench:ring-cluster`: the ring inside a distributed cluster of real processes (ZooKeeper, 2 Redis,
 * 4 storage nodes in 2 shards of 2, 2 coordinators, 1 replicator; bench/README.md, "Ring in the cluster").
 *
 * - freeze: 8 clients upload 512-byte files through both coordinators; a node is frozen (SIGSTOP). Upload
 *   rate 3-10 s after the freeze against the 5 s before it, and the longest upload, with the ring and
 *   without it (`--no-ring` everywhere, the baseline), each on a fresh cluster.
 * - kills: the same load; a node is SIGKILLed `--kills` times (in turn), and each time the time until every
 *   coordinator holds it down (`GET /cluster` shows it suspect: from its refused connections or the ring,
 *   whichever comes first), until every coordinator's ring holds it dead, and the uploads not answered 200
 *   after the first. The node is restarted and rejoins before the next kill.
 * - deltas: 12 processes (8 nodes in 4 shards of 2, 3 coordinators, 1 replicator); 20 changes of the runtime
 *   settings written to ZooKeeper; for each, the time until every process applied it (their `/stats`
 *   `settings.appliedAt`, on the same machine's clock, against the time before the write).
 * - idle: the same 12 processes idle for 30 s, with the ring and without: CPU per process (from /proc) and
 *   the ring's bytes per second per process (from `/ring`).
 * - throughput: two clusters of the freeze shape at once, one with the ring, one without; rounds of 8 s of
 *   the upload load on each in turn; the ratio of their medians.
 * - soak: the freeze shape with the ring, a light upload load (2 clients) and two CPU-hog processes for
 *   `--soak-minutes`; suspicions raised and deaths declared by every process (`/ring` `detector`): all false.
 *
 * Usage: node dist/bench/ring-cluster.js [--kills 20] [--soak-minutes 10] [--rounds 3]
 *        [--skip freeze,kills,deltas,idle,throughput,soak]
 */
const { values } = parseArgs({
  options: {
    kills: { type: "string", default: "20" },
    "soak-minutes": { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    skip: { type: "string", default: "" },
  },
});
const KILLS = Number(values.kills);
const SOAK_MINUTES = Number(values["soak-minutes"]);
const ROUNDS = Number(values.rounds);
const skip = new Set(values.skip.split(",").filter(Boolean));
const NODES = Object.values(SHARDS).flat().sort();

const t0 = performance.now();
const clock = (): number => performance.now() - t0;

console.log(
  `method: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${Math.round(totalmem() / 1024 ** 3)} GiB, ` +
    `Node ${process.version}, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(" ")} at the start`,
);
console.log(
  "cluster: ZooKeeper, 2 Redis, 4 nodes in 2 shards of 2, 2 coordinators, 1 replicator (real processes, " +
    "loopback); load: 8 clients, 512-byte uploads, spread over both coordinators",
);

/** Runs `body` on a fresh cluster and stops every process afterwards. */
async function withCluster<T>(ring: boolean, body: (c: ChaosCluster) => Promise<T>): Promise<T> {
  const cleanups: (() => unknown)[] = [];
  const hooks = { after: (fn: () => unknown) => void cleanups.unshift(fn) };
  const off = ring ? [] : ["--no-ring"];
  try {
    const c = await ChaosCluster.start(hooks, clock, {
      nodeArgs: off,
      coordinatorArgs: off,
      replicatorArgs: off,
    });
    if (ring) await waitAllAlive(c);
    return await body(c);
  } finally {
    for (const fn of cleanups) await fn();
  }
}

interface RingMembers {
  members: { url: string; status: string; role: string }[];
  transport: { bytesIn: number; bytesOut: number };
}

async function ringOf(url: string): Promise<RingMembers> {
  return (await (await fetch(`${url}/ring`)).json()) as RingMembers;
}

/** Waits until every coordinator's ring holds all 7 processes alive. */
async function waitAllAlive(c: ChaosCluster): Promise<void> {
  await waitFor(
    async () => {
      for (const co of c.coordinators) {
        const r = await ringOf(co.url);
        if (r.members.filter((m) => m.status === "alive").length < NODES.length + 3) return false;
      }
      return true;
    },
    { timeoutMs: 60_000, intervalMs: 100, what: "every process alive in every coordinator's ring" },
  );
}

/** True when every coordinator's `GET /cluster` shows `server` suspect (it routes around it). */
async function everyCoordinatorAvoids(c: ChaosCluster, server: string): Promise<boolean> {
  const views = await Promise.all(
    c.coordinators.map(
      async (co) =>
        (await (await fetch(`${co.url}/cluster`)).json()) as { servers: { id: string; suspect: boolean }[] },
    ),
  );
  return views.every((v) => v.servers.find((s) => s.id === server)?.suspect === true);
}

function load(c: ChaosCluster, prefix: string): UploadLoad {
  const urls = c.coordinators.map((co) => co.url);
  const l = new UploadLoad(() => urls, { clients: 8, sizeBytes: 512, prefix, clock });
  l.start();
  return l;
}

async function freeze(ring: boolean): Promise<void> {
  await withCluster(ring, async (c) => {
    const l = load(c, ring ? "ring-" : "plain-");
    await sleep(4000);
    const from = clock();
    await sleep(5000);
    const frozenAt = clock();
    await c.freeze("1");
    let avoidedAt: number | undefined;
    const watch = (async () => {
      while (clock() - frozenAt < 10_000 && avoidedAt === undefined) {
        if (await everyCoordinatorAvoids(c, "1").catch(() => false)) avoidedAt = clock();
        else await sleep(20);
      }
    })();
    await sleep(10_000);
    await watch;
    c.thaw("1");
    await l.stop();
    const before = l.answered(from, frozenAt).ok / ((frozenAt - from) / 1000);
    const after = l.answered(frozenAt + 3000, frozenAt + 10_000).ok / 7;
    const during = l.records.filter((r) => r.startedMs >= frozenAt - 1000 && r.startedMs < frozenAt + 10_000);
    const longest = Math.max(...during.map((r) => r.endedMs - r.startedMs));
    const failed = during.filter((r) => r.status !== 200).length;
    console.log(
      `freeze (${ring ? "ring" : "no ring"}): ${before.toFixed(0)} uploads/s before, ${after.toFixed(0)}/s 3-10 s ` +
        `after (${(after / before).toFixed(2)}×); longest upload ${(longest / 1000).toFixed(2)} s; ` +
        `${failed} of ${during.length} not 200; every coordinator avoided the node after ` +
        `${avoidedAt === undefined ? "-" : `${((avoidedAt - frozenAt) / 1000).toFixed(2)} s`}`,
    );
  });
}

async function kills(): Promise<void> {
  await withCluster(true, async (c) => {
    const l = load(c, "kill-");
    await sleep(3000);
    const detect: number[] = [];
    /** From the kill until every coordinator's ring declared the node dead (not only suspect). */
    const dead: number[] = [];
    let errorsAfter = 0;
    let uploadsAfter = 0;
    for (let i = 0; i < KILLS; i++) {
      const server = NODES[i % NODES.length] as string;
      const killedAt = clock();
      await c.kill({ role: "node", id: server });
      await waitFor(() => everyCoordinatorAvoids(c, server), {
        timeoutMs: 30_000,
        intervalMs: 10,
        what: `every coordinator to avoid node ${server}`,
      });
      const avoidedAt = clock();
      detect.push(avoidedAt - killedAt);
      const url = c.nodeUrl(server);
      await waitFor(
        async () => {
          const views = await Promise.all(c.coordinators.map((co) => ringOf(co.url)));
          return views.every((v) => v.members.find((m) => m.url === url)?.status === "dead");
        },
        { timeoutMs: 30_000, intervalMs: 10, what: `every coordinator's ring to hold node ${server} dead` },
      );
      dead.push(clock() - killedAt);
      await sleep(2000);
      errorsAfter += l.failedSince(avoidedAt).length;
      uploadsAfter += l.records.filter((r) => r.startedMs >= avoidedAt).length;
      await c.restart({ role: "node", id: server });
      await waitAllAlive(c);
      await sleep(500);
      console.log(
        `  kill ${i + 1}: node ${server} avoided by every coordinator after ${Math.round(detect[i]!)} ms`,
      );
    }
    await l.stop();
    const sorted = [...detect].sort((a, b) => a - b);
    console.log(
      `kills: ${KILLS} SIGKILLs of a node under load; every coordinator routes around it after ` +
        `p50 ${Math.round(quantile(sorted, 0.5))} ms, p99 ${Math.round(quantile(sorted, 0.99))} ms, ` +
        `max ${Math.round(sorted[sorted.length - 1] ?? 0)} ms; uploads not answered 200 after that: ` +
        `${errorsAfter} of ${uploadsAfter}; the ring declared it dead in every coordinator's view after ` +
        `p50 ${Math.round(quantile(dead, 0.5))} ms, p99 ${Math.round(quantile(dead, 0.99))} ms`,
    );
  });
}

/** 12 processes: 8 nodes in 4 shards of 2, 3 coordinators, 1 replicator, over ZooKeeper and one Redis. */
interface Big {
  zk: string;
  nodes: ChildHandle[];
  coordinators: ChildHandle[];
  replicator: ChildHandle;
  all: ChildHandle[];
}

async function withBig<T>(ring: boolean, body: (b: Big) => Promise<T>): Promise<T> {
  const cleanups: (() => unknown)[] = [];
  const hooks = { after: (fn: () => unknown) => void cleanups.unshift(fn) };
  const off = ring ? [] : ["--no-ring"];
  try {
    const [zk, redis] = await Promise.all([startZooKeeper(hooks), startRedis(hooks)]);
    const c = await ProcCluster.create(hooks, zk.connectString, "/big");
    const ids = ["1", "2", "3", "4", "5", "6", "7", "8"];
    const nodes = await Promise.all(ids.map((id) => c.startNode(id, off)));
    await c.admin("backpack-coordinator-init", "big-queue", `${redis.host}:${redis.port}`);
    for (const [id, url] of c.nodeUrls) await c.admin("backpack-coordinator-add-server", id, url);
    for (let s = 1; s <= 4; s++) {
      await c.admin("backpack-coordinator-add-shard", String(s), `${s},${s + 4}`, "100gb");
      await c.admin("backpack-coordinator-enable-shard", String(s));
    }
    const coordinators = await Promise.all([0, 1, 2].map(() => c.startCoordinator(off)));
    const replicator = await c.track({
      command: "backpack-replicator",
      args: [zk.connectString, "/big", "8", "--listen", "127.0.0.1:0", ...off],
    });
    const all = [...nodes, ...coordinators, replicator];
    if (ring) {
      await waitFor(
        async () => {
          const r = await ringOf(coordinators[0]!.url);
          return r.members.filter((m) => m.status === "alive").length === all.length;
        },
        { timeoutMs: 60_000, intervalMs: 200, what: "12 processes alive in the ring" },
      );
    }
    return await body({ zk: zk.connectString, nodes, coordinators, replicator, all });
  } finally {
    for (const fn of cleanups) await fn();
  }
}

async function deltas(): Promise<void> {
  await withBig(true, async (b) => {
    const map = openClusterMap({ zk: b.zk, root: "/big" });
    await map.start();
    const lat: number[] = [];
    const viaRing: number[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const before = Date.now();
        const s = await map.setSettings({ logLevel: i % 2 === 0 ? "warn" : null });
        let applied: { version: number; appliedAt: number }[] = [];
        await waitFor(
          async () => {
            applied = await Promise.all(
              b.all.map(
                async (p) =>
                  ((await (await fetch(`${p.url}/stats`)).json()) as { settings: (typeof applied)[number] })
                    .settings,
              ),
            );
            return applied.every((a) => a.version >= s.version);
          },
          { timeoutMs: 30_000, intervalMs: 20, what: `settings version ${s.version} everywhere` },
        );
        lat.push(Math.max(...applied.map((a) => a.appliedAt)) - before);
        viaRing.push(Math.max(...applied.slice(0, b.nodes.length).map((a) => a.appliedAt)) - before);
        await sleep(200);
      }
    } finally {
      await map.stop();
    }
    const q = (xs: number[], p: number): number => Math.round(quantile(xs, p));
    console.log(
      `deltas: 20 settings changes, ${b.all.length} processes: applied by every one after p50 ${q(lat, 0.5)} ms, ` +
        `p99 ${q(lat, 0.99)} ms, max ${q(lat, 1)} ms (storage nodes, over the ring: p50 ${q(viaRing, 0.5)} ms, ` +
        `p99 ${q(viaRing, 0.99)} ms)`,
    );
  });
}

/** CPU (% of one core) and ring bytes/s per process over 30 s of idle. */
async function idleFigures(ring: boolean): Promise<{ cpu: number[]; bytes: number[] }> {
  return withBig(ring, async (b) => {
    await sleep(10_000);
    const read = async (): Promise<{ cpu: number[]; bytes: number[] }> => ({
      cpu: b.all.map((p) => processCpuSeconds(p.pid ?? 0) ?? 0),
      bytes: ring
        ? await Promise.all(
            b.all.map(async (p) => {
              const t = (await ringOf(p.url)).transport;
              return t.bytesIn + t.bytesOut;
            }),
          )
        : b.all.map(() => 0),
    });
    const a = await read();
    const t = performance.now();
    await sleep(30_000);
    const z = await read();
    const sec = (performance.now() - t) / 1000;
    return {
      cpu: z.cpu.map((c, i) => (100 * (c - a.cpu[i]!)) / sec),
      bytes: z.bytes.map((x, i) => (x - a.bytes[i]!) / sec),
    };
  });
}

async function idle(): Promise<void> {
  const withRing = await idleFigures(true);
  const without = await idleFigures(false);
  const mean = (xs: number[]): number => xs.reduce((x, y) => x + y, 0) / xs.length;
  const roles = ["nodes", "coordinators", "replicator"] as const;
  const parts = (xs: number[]): number[][] => [xs.slice(0, 8), xs.slice(8, 11), xs.slice(11)];
  const rows = roles.map((role, i) => {
    const r = mean(parts(withRing.cpu)[i]!);
    const n = mean(parts(without.cpu)[i]!);
    return `${role} ${r.toFixed(2)}% CPU with the ring, ${n.toFixed(2)}% without, ${Math.round(mean(parts(withRing.bytes)[i]!))} B/s`;
  });
  console.log(`idle, per process over 30 s (12 processes): ${rows.join("; ")}`);
}

async function throughput(): Promise<void> {
  const cleanups: (() => unknown)[] = [];
  const hooks = { after: (fn: () => unknown) => void cleanups.unshift(fn) };
  try {
    const off = ["--no-ring"];
    const ringCluster = await ChaosCluster.start(hooks, clock);
    const plain = await ChaosCluster.start(hooks, clock, {
      nodeArgs: off,
      coordinatorArgs: off,
      replicatorArgs: off,
    });
    await waitAllAlive(ringCluster);
    const rates: Record<"ring" | "plain", number[]> = { ring: [], plain: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, c] of r % 2 === 0
        ? ([
            ["ring", ringCluster],
            ["plain", plain],
          ] as const)
        : ([
            ["plain", plain],
            ["ring", ringCluster],
          ] as const)) {
        const l = load(c, `tp-${name}-${r}-`);
        await sleep(2000);
        const from = clock();
        await sleep(8000);
        const to = clock();
        await l.stop();
        rates[name].push(l.answered(from, to).ok / ((to - from) / 1000));
      }
    }
    const med = (xs: number[]): number => quantile(xs, 0.5);
    console.log(
      `throughput: ${ROUNDS} rounds of 8 s each: with the ring ${rates.ring.map((x) => x.toFixed(0)).join(", ")} ` +
        `uploads/s, without ${rates.plain.map((x) => x.toFixed(0)).join(", ")}; medians ${(med(rates.ring) / med(rates.plain)).toFixed(3)}×`,
    );
  } finally {
    for (const fn of cleanups) await fn();
  }
}

interface Detector {
  detector: { suspicionsRaised: number; deathsDeclared: number; probes: number };
}

async function soak(): Promise<void> {
  await withCluster(true, async (c) => {
    const urls = [...NODES.map((id) => c.nodeUrl(id)), ...c.coordinators.map((x) => x.url), c.replicator.url];
    const sum = async (): Promise<{ s: number; d: number; p: number }> => {
      const views = await Promise.all(
        urls.map(async (u) => (await (await fetch(`${u}/ring`)).json()) as Detector),
      );
      return views.reduce(
        (acc, v) => ({
          s: acc.s + v.detector.suspicionsRaised,
          d: acc.d + v.detector.deathsDeclared,
          p: acc.p + v.detector.probes,
        }),
        { s: 0, d: 0, p: 0 },
      );
    };
    const hogs = [0, 1].map(() => spawn(process.execPath, ["-e", "for(;;){}"], { stdio: "ignore" }));
    const urlsLoad = c.coordinators.map((x) => x.url);
    const l = new UploadLoad(() => urlsLoad, { clients: 2, sizeBytes: 512, prefix: "soak-", clock });
    try {
      const a = await sum();
      l.start();
      await sleep(SOAK_MINUTES * 60_000);
      const z = await sum();
      console.log(
        `soak: ${SOAK_MINUTES} min, 7 processes, 2 CPU hogs, 2 clients uploading: ${z.p - a.p} probes, ` +
          `${z.s - a.s} false suspicions, ${z.d - a.d} false deaths; ${l.answered(0, Infinity).ok} uploads`,
      );
    } finally {
      await l.stop();
      for (const h of hogs) h.kill("SIGKILL");
    }
  });
}

if (!skip.has("freeze")) {
  await freeze(true);
  await freeze(false);
}
if (!skip.has("kills")) await kills();
if (!skip.has("deltas")) await deltas();
if (!skip.has("idle")) await idle();
if (!skip.has("throughput")) await throughput();
if (!skip.has("soak")) await soak();
