/**
 * `npm run bench:list`: `GET /_list` (the coordinator's listing, merged across shards and replicas) and S3
 * ListObjectsV2 (the coordinator's S3 front, with the AWS SDK at its defaults as the client) in a cluster
 * holding BENCH_KEYS (default 1,000,000) keys under one prefix.
 *
 * Cluster: 2 shards × 2 storage nodes and one coordinator (with its S3 front), each in its own process, the
 * cluster map in an embedded map file, the queue embedded (file). The keys are written straight into the
 * nodes' stores before they start (half on each shard, both replicas of a shard holding the same records: a
 * copy of the first's data dir), in random order. A node builds its key order at its first listing (in
 * slices, answering 503 until it is done): the time until the cluster's first page is reported, and the pages
 * are measured after it.
 *
 * Measured, one request at a time: a page of 1,000 keys (`limit=1000`) starting at a random key (`after`) of
 * the big prefix, against the baseline of a page of the 1,000 keys under a second, small prefix of the same
 * cluster (same hops: the ratio is what the 1M keys cost). Target: p99 ≤ 50 ms. The same through S3: the two
 * prefixes are the buckets `bucket` and `small`; as a ceiling, the SDK against a server that answers a stored
 * page (lib/null-s3-server.ts). The client's CPU per page is printed with each. Also the memory a node's index
 * takes per key, and of it the key order's, measured in this process while the keys were written.
 */
import { cpus, totalmem, tmpdir } from "node:os";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { Agent } from "undici";
import { CoordinatorClient } from "../src/client/coordinator-client.js";
import { storedHeadersBytes } from "../src/common/stored-headers.js";
import { EmbeddedClusterMap } from "../src/cluster/embedded.js";
import { openStore } from "../src/storage/store.js";
import { startServerProcess, type ServerProcess } from "./lib/server-process.js";
import { freePort } from "../test/helpers/wait.js";

const KEYS = Number(process.env.BENCH_KEYS ?? 1_000_000);
const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 300);
const PAGE = 1000;
const TARGET_P99_MS = 50;
const NULL_S3 = fileURLToPath(new URL("./lib/null-s3-server.js", import.meta.url));
const BIN = (name: string): string => fileURLToPath(new URL(`../src/cli/bin/${name}.js`, import.meta.url));
/** A key of the big prefix: S3-like names, with a stored ETag as the S3 front stores it. */
const bigKey = (i: number): string => `bucket/photos/${String(i % 1000).padStart(3, "0")}/IMG_${i}.jpg`;
const smallKey = (i: number): string => `small/file-${String(i).padStart(4, "0")}`;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

function shuffled(n: number): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Writes shard `shard`'s half of the keys into a store at `dir`; returns its index figures. */
async function fill(
  dir: string,
  shard: number,
): Promise<{
  objects: number;
  indexBytes: number;
  orderBytes: number;
  keyBytes: number;
  headerBytes: number;
}> {
  const store = await openStore({ dir, sync: "none", keyOrderWaitMs: 600_000 });
  const body = Buffer.alloc(100, 7);
  const etag = (i: number): Record<string, string> => ({
    "x-backpack-meta-s3-etag": (i * 2654435761).toString(16).padStart(32, "0").slice(-32),
  });
  let keyBytes = 0;
  let headerBytes = 0;
  const order = shuffled(KEYS).filter((i) => i % 2 === shard);
  for (let at = 0; at < order.length; at += 1000) {
    await Promise.all(
      order.slice(at, at + 1000).map((i) => {
        const key = bigKey(i);
        const headers = etag(i);
        keyBytes += Buffer.byteLength(key);
        headerBytes += 2 + storedHeadersBytes(headers); // with the index's length prefix
        return store.put(key, body, { maxBytes: 1 << 20, contentType: "image/jpeg", headers });
      }),
    );
    if (at % 100_000 === 0)
      process.stdout.write(`\r  shard ${shard + 1}: ${at.toLocaleString("en-US")} keys written`);
  }
  for (let i = shard; i < PAGE; i += 2) await store.put(smallKey(i), body, { maxBytes: 1 << 20 });
  process.stdout.write(`\r  shard ${shard + 1}: ${order.length.toLocaleString("en-US")} keys written\n`);
  await store.listKeys("", undefined, 1); // builds the key order, for its memory figure
  const stats = store.stats();
  await store.close();
  return {
    objects: stats.objects,
    indexBytes: stats.indexHeapBytes,
    orderBytes: stats.keyOrderBytes,
    keyBytes,
    headerBytes,
  };
}

/** Page times in ms, sorted, with the client's (this process's) CPU per page. */
type Times = number[] & { clientCpuMs?: number };

/**
 * Times SAMPLES pages, one at a time, after 20 that warm up: `page(after)` fetches one page starting after a
 * key from `afterOf` and answers its entry count (an empty page is an error).
 */
async function measure(
  afterOf: () => string | undefined,
  page: (after: string | undefined) => Promise<number>,
): Promise<Times> {
  const times: number[] = [];
  let cpu = 0;
  for (let n = 0; n < SAMPLES + 20; n++) {
    const after = afterOf();
    const cpu0 = process.cpuUsage();
    const started = performance.now();
    const count = await page(after);
    const ms = performance.now() - started;
    const used = process.cpuUsage(cpu0);
    if (count === 0) throw new Error(`an empty page after ${after}`);
    if (n < 20) continue;
    times.push(ms);
    cpu += (used.user + used.system) / 1000;
  }
  const sorted: Times = times.sort((x, y) => x - y);
  sorted.clientCpuMs = cpu / times.length;
  return sorted;
}

/** A page of `GET /_list` under `prefix`. */
const listPage =
  (client: CoordinatorClient, base: string, prefix: string) =>
  async (after: string | undefined): Promise<number> =>
    (await client.list(base, { prefix, limit: PAGE, ...(after !== undefined ? { after } : {}) })).entries
      .length;

/** A page of S3 ListObjectsV2 of `bucket` (SDK defaults). */
const s3Page =
  (s3: S3Client, bucket: string) =>
  async (after: string | undefined): Promise<number> =>
    (
      await s3.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          MaxKeys: PAGE,
          ...(after !== undefined ? { StartAfter: after } : {}),
        }),
      )
    ).Contents?.length ?? 0;

async function main(): Promise<void> {
  console.log("# bench:list: GET /_list and S3 ListObjectsV2, a page of 1,000 keys");
  console.log(
    `machine: ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB; Node ${process.version}`,
  );
  console.log(
    `cluster: 2 shards × 2 storage nodes + 1 coordinator (with its S3 front), each its own process; ${KEYS.toLocaleString("en-US")} keys under "bucket/" (100-byte bodies, a stored ETag each) + ${PAGE} under "small/"; ${SAMPLES} pages each, one at a time, from a random key\n`,
  );
  const dir = await mkdtemp(join(tmpdir(), "backpack-list-bench-"));
  const servers: ServerProcess[] = [];
  try {
    const started = performance.now();
    const figures = [];
    for (const shard of [0, 1]) figures.push(await fill(join(dir, `node-${2 * shard + 1}`), shard));
    await cp(join(dir, "node-1"), join(dir, "node-2"), { recursive: true });
    await cp(join(dir, "node-3"), join(dir, "node-4"), { recursive: true });
    console.log(`  written in ${((performance.now() - started) / 1000).toFixed(0)} s`);

    const mapFile = join(dir, "cluster.json");
    const map = new EmbeddedClusterMap({ file: mapFile });
    await map.start();
    await map.init({ key: `file:${join(dir, "queue")}`, servers: [] });
    for (let i = 1; i <= 4; i++) {
      const t0 = performance.now();
      const node = await startServerProcess(
        BIN("backpack"),
        ["node", join(dir, `node-${i}`), "127.0.0.1", "0"],
        120_000,
      );
      servers.push(node);
      await map.addServer(String(i), node.url);
      console.log(
        `  node ${i} serving after ${((performance.now() - t0) / 1000).toFixed(1)} s (index from the checkpoint)`,
      );
    }
    await map.addShard("1", ["1", "2"], 1024 ** 4);
    await map.addShard("2", ["3", "4"], 1024 ** 4);
    await map.setShardEnabled("1", true);
    await map.setShardEnabled("2", true);
    // S3: the keys under "bucket/" and "small/" are the objects of the buckets of those names.
    const key = { id: "BENCHLISTKEY", secret: randomBytes(20).toString("hex") };
    const created = new Date().toISOString();
    await map.updateS3((current) => ({
      next: {
        keys: { [key.id]: { ...key, name: "bench", created, grants: { "*": "owner" } } },
        buckets: Object.fromEntries(
          ["bucket", "small"].map((name) => [name, { name, created, owner: key.id, shards: ["1", "2"] }]),
        ),
      },
      result: current,
    }));
    await map.stop();
    const s3Port = await freePort();
    const coordinator = await startServerProcess(BIN("backpack-coordinator"), [
      `file:${mapFile}`,
      "/",
      "127.0.0.1",
      "0",
      "--s3-listen",
      `127.0.0.1:${s3Port}`,
    ]);
    servers.push(coordinator);

    const agent = new Agent({ connections: 4 });
    const client = new CoordinatorClient(agent);
    const firstAsked = performance.now();
    let refused = 0;
    for (;;) {
      try {
        await client.list(coordinator.url, { prefix: "small/", limit: 1 });
        break;
      } catch (err) {
        if ((err as { details?: { status?: number } }).details?.status !== 503) throw err;
        refused++;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    console.log(
      `  first page after ${((performance.now() - firstAsked) / 1000).toFixed(1)} s (the nodes built their key order; ${refused} listings answered 503 meanwhile)`,
    );
    const none = (): undefined => undefined;
    const small = await measure(none, listPage(client, coordinator.url, "small/"));
    const big = await measure(
      () => bigKey(Math.floor(Math.random() * KEYS)),
      listPage(client, coordinator.url, "bucket/"),
    );
    // Alternate once more, so that drift of the shared machine shows rather than biases the ratio.
    const small2 = await measure(none, listPage(client, coordinator.url, "small/"));
    await agent.close();
    const sdk = (endpoint: string): S3Client =>
      new S3Client({
        endpoint,
        region: "us-east-1",
        forcePathStyle: true,
        credentials: { accessKeyId: key.id, secretAccessKey: key.secret },
      });
    const s3 = sdk(`http://127.0.0.1:${s3Port}`);
    const randomStart = (): string => bigKey(Math.floor(Math.random() * KEYS)).slice("bucket/".length);
    const s3Small = await measure(none, s3Page(s3, "small"));
    const s3Big = await measure(randomStart, s3Page(s3, "bucket"));
    const s3Small2 = await measure(none, s3Page(s3, "small"));
    s3.destroy();
    // The ceiling: the same SDK calls against a server that answers a stored page of 1,000 keys.
    const nullServer = await startServerProcess(NULL_S3, []);
    servers.push(nullServer);
    const ceilingClient = sdk(nullServer.url);
    const ceiling = await measure(randomStart, s3Page(ceilingClient, "bucket"));
    ceilingClient.destroy();

    const row = (name: string, t: Times): string =>
      `  ${name.padEnd(44)} p50 ${percentile(t, 50).toFixed(1).padStart(6)} ms   p99 ${percentile(t, 99).toFixed(1).padStart(6)} ms   max ${t[t.length - 1]!.toFixed(1).padStart(6)} ms   client CPU ${t.clientCpuMs!.toFixed(1).padStart(5)} ms/page`;
    console.log("");
    console.log(row(`baseline: the ${PAGE} keys of "small/" (1st)`, small));
    console.log(row(`a page of ${PAGE} of ${KEYS.toLocaleString("en-US")} keys`, big));
    console.log(row(`baseline: the ${PAGE} keys of "small/" (2nd)`, small2));
    console.log(row(`S3 ListObjectsV2: bucket "small" (1st)`, s3Small));
    console.log(row(`S3 ListObjectsV2: a page of bucket "bucket"`, s3Big));
    console.log(row(`S3 ListObjectsV2: bucket "small" (2nd)`, s3Small2));
    console.log(row(`ceiling: the SDK, a server doing nothing`, ceiling));
    const verdict = (name: string, t: number[], baseline: number[][]): string => {
      const p99 = percentile(t, 99);
      const base = Math.max(...baseline.map((b) => percentile(b, 99)));
      return `  ${name}: p99 ${p99.toFixed(1)} ms (target ≤ ${TARGET_P99_MS} ms: ${p99 <= TARGET_P99_MS ? "met" : "NOT MET"}); ${(p99 / base).toFixed(2)}× the small prefix's p99`;
    };
    console.log("");
    console.log(verdict("GET /_list", big, [small, small2]));
    console.log(verdict("S3 ListObjectsV2", s3Big, [s3Small, s3Small2]));
    const f = figures[0]!;
    const per = (bytes: number): string => (bytes / f.objects).toFixed(1);
    console.log(
      `  memory per key on a node (${f.objects.toLocaleString("en-US")} keys): index ${per(f.indexBytes)} bytes in all: ` +
        `the keys' own bytes ${per(f.keyBytes)}, their stored ETag headers ${per(f.headerBytes)}, ` +
        `the rest ${per(f.indexBytes - f.keyBytes - f.headerBytes)}, of which the key order ${per(f.orderBytes)}`,
    );
  } finally {
    for (const s of servers.reverse()) await s.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
