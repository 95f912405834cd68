import { cpus, loadavg, totalmem } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { ChaosCluster, SHARDS } from "../test/helpers/chaos-cluster.js";
import { UploadLoad } from "../test/helpers/upload-load.js";
import { waitFor } from "../test/helpers/wait.js";
import { quantile } from "./ring-sim/random.js";

/**
 * `npm run bench:ring-cluster`: the ring inside a distributed cluster of real processes (ZooKeeper, 2 Redis,
 * 4 storage nodes in 2 shards of 2, 2 coordinators, 1 replicator; bench/README.md, "Ring in the cluster").
 *
 * - freeze: 8 clients upload 512-byte files through both coordinators; a node is frozen (SIGSTOP). Upload
 *   rate 3-10 s after the freeze against the 5 s before it, and the longest upload, with the ring and
 *   without it (`--no-ring` everywhere, the baseline), each on a fresh cluster.
 * - kills: the same load; a node is SIGKILLed `--kills` times (in turn), and each time the time until every
 *   coordinator holds it down (`GET /cluster` shows it suspect), and the uploads not answered 200 after that.
 *   The node is restarted and rejoins before the next kill.
 *
 * Usage: node dist/bench/ring-cluster.js [--kills 20] [--skip freeze,kills]
 */
const { values } = parseArgs({
  options: {
    kills: { type: "string", default: "20" },
    skip: { type: "string", default: "" },
  },
});
const KILLS = Number(values.kills);
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
        `${errorsAfter} of ${uploadsAfter}`,
    );
  });
}

if (!skip.has("freeze")) {
  await freeze(true);
  await freeze(false);
}
if (!skip.has("kills")) await kills();
