import { CreateBucketCommand, GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { processCpuSeconds, startServerProcess } from "./lib/server-process.js";

/**
 * `npm run bench:s3`: the embedded cluster (`backpack dev`, 3 shards × 2 nodes, 2 coordinators with their S3
 * fronts) in its own process; this process is the client. In one run, alternating rounds of the same work
 * through the native coordinator API (undici, `PUT /<key>` then `GET /<shard>:<key>`) and through S3 with the
 * AWS SDK's defaults (SigV4, CRC32 checksums): PUT and GET of 1 KiB and of 1 MiB. Reported: each side's rate,
 * the ratio S3 / native (target ≥ 0.8), and the storage node GETs per S3 GET (target 1), from the nodes' own
 * counters. The ceiling, in the same rounds: the same SDK client against a server in its own process that
 * speaks just enough S3 and does nothing (lib/null-s3-server.ts): the most the client side allows on this
 * machine, as a ratio to native. Options (env): BENCH_SECONDS per measurement (default 5), BENCH_CONNECTIONS (default 16),
 * BENCH_ROUNDS (default 3; the median round is reported).
 */
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const KEYS = 500;
const TARGET_RATIO = 0.8;
const BIN = fileURLToPath(new URL("../src/cli/bin/backpack.js", import.meta.url));
const NULL_S3 = fileURLToPath(new URL("./lib/null-s3-server.js", import.meta.url));

interface Cluster {
  pid: number;
  coordinator: string;
  s3: string;
  key: { id: string; secret: string };
  nodes: string[];
  stop(): Promise<void>;
}

async function startCluster(dir: string): Promise<Cluster> {
  const proc = spawn(process.execPath, [BIN, "dev", "--data", dir, "--port", "0", "--no-ring"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  proc.stderr.resume();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`backpack dev did not start:\n${out}`)), 60_000);
    proc.stdout.on("data", () => {
      if (out.includes("backpack is ready")) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once("exit", () => reject(new Error(`backpack dev exited:\n${out}`)));
  });
  const url = (label: RegExp): string => {
    const m = new RegExp(`${label.source}\\s+(http://\\S+)`).exec(out);
    if (!m?.[1]) throw new Error(`no ${label.source} in the banner:\n${out}`);
    return m[1];
  };
  const key = /AWS_ACCESS_KEY_ID=(\S+) AWS_SECRET_ACCESS_KEY=(\S+)/.exec(out);
  const nodes = [...out.matchAll(/node \d+ \(shard \d+\)\s+(http:\/\/\S+)/g)].map((m) => m[1] as string);
  return {
    pid: proc.pid ?? 0,
    coordinator: url(/coordinator 1/),
    s3: url(/S3 endpoint 1/),
    key: { id: key?.[1] ?? "", secret: key?.[2] ?? "" },
    nodes,
    stop: async () => {
      proc.kill("SIGTERM");
      await new Promise((resolve) => proc.once("exit", resolve));
    },
  };
}

interface Rate {
  perSec: number;
  /** CPU time of the cluster's process per operation, µs (the client's own work is not in it). */
  cpuUs: number;
  /** CPU time of this process (the client: undici, or the AWS SDK) per operation, µs. */
  clientUs: number;
}

/** Runs `op` on CONNECTIONS loops for SECONDS; resolves with operations per second (errors throw). */
async function rate(pid: number, op: (i: number) => Promise<void>): Promise<Rate> {
  const cpu0 = processCpuSeconds(pid) ?? 0;
  const client0 = process.cpuUsage();
  const end = performance.now() + SECONDS * 1000;
  let done = 0;
  let n = 0;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < end) {
        await op(n++);
        done++;
      }
    }),
  );
  const cpu = (processCpuSeconds(pid) ?? 0) - cpu0;
  const client = process.cpuUsage(client0);
  const ops = Math.max(1, done);
  return { perSec: done / SECONDS, cpuUs: (cpu / ops) * 1e6, clientUs: (client.user + client.system) / ops };
}

async function nodeGets(nodes: string[], agent: Agent): Promise<number> {
  let sum = 0;
  for (const n of nodes) {
    const res = await request(`${n}/stats`, { dispatcher: agent });
    const stats = (await res.body.json()) as { gets?: { count?: number } };
    sum += stats.gets?.count ?? 0;
  }
  return sum;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

async function main(): Promise<void> {
  console.log(
    `bench:s3 on ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), Node ${process.version}, load ${loadavg()
      .map((x) => x.toFixed(1))
      .join(" / ")}`,
  );
  console.log(
    `method: backpack dev (3 shards x 2 nodes, sync batch) in its own process; ${CONNECTIONS} concurrent requests, ${SECONDS} s per measurement, ${ROUNDS} alternating rounds (median); ${KEYS} keys per size`,
  );
  const dir = await mkdtemp(join(tmpdir(), "bench-s3-"));
  const cluster = await startCluster(dir);
  const nullS3 = await startServerProcess(NULL_S3, []);
  const agent = new Agent({ connections: CONNECTIONS * 2 });
  const client = (endpoint: string): S3Client =>
    new S3Client({
      endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: cluster.key.id, secretAccessKey: cluster.key.secret },
      requestHandler: { httpAgent: { keepAlive: true, maxSockets: CONNECTIONS * 2 } },
    });
  const s3 = client(cluster.s3);
  const ceiling = client(nullS3.url);
  try {
    await s3.send(new CreateBucketCommand({ Bucket: "bench" }));
    let failed = false;
    for (const size of [1024, 1024 * 1024]) {
      const body = Buffer.alloc(size, 7);
      const label = size === 1024 ? "1 KiB" : "1 MiB";
      const shards = new Map<number, string>();
      const nativePut = async (i: number): Promise<void> => {
        const k = i % KEYS;
        const res = await request(`${cluster.coordinator}/native-${size}/k${k}`, {
          method: "PUT",
          body,
          dispatcher: agent,
        });
        if (res.statusCode !== 200)
          throw new Error(`native PUT answered ${res.statusCode}: ${await res.body.text()}`);
        shards.set(k, ((await res.body.json()) as { shard_id: string }).shard_id);
      };
      const nativeGet = async (i: number): Promise<void> => {
        const k = i % KEYS;
        const res = await request(`${cluster.coordinator}/${shards.get(k) ?? "1"}:native-${size}/k${k}`, {
          dispatcher: agent,
        });
        if (res.statusCode !== 200) throw new Error(`native GET answered ${res.statusCode}`);
        await res.body.dump({ limit: Infinity });
      };
      const s3Put = async (i: number): Promise<void> => {
        await s3.send(new PutObjectCommand({ Bucket: "bench", Key: `s3-${size}/k${i % KEYS}`, Body: body }));
      };
      const s3Get = async (i: number): Promise<void> => {
        const got = await s3.send(new GetObjectCommand({ Bucket: "bench", Key: `s3-${size}/k${i % KEYS}` }));
        await got.Body?.transformToByteArray();
      };
      const nullPut = async (i: number): Promise<void> => {
        await ceiling.send(
          new PutObjectCommand({ Bucket: "bench", Key: `s3-${size}/k${i % KEYS}`, Body: body }),
        );
      };
      const nullGet = async (i: number): Promise<void> => {
        const got = await ceiling.send(
          new GetObjectCommand({ Bucket: "bench", Key: `s3-${size}/k${i % KEYS}` }),
        );
        await got.Body?.transformToByteArray();
      };
      // Every key written once before the GETs.
      for (let k = 0; k < KEYS; k += CONNECTIONS) {
        await Promise.all(
          Array.from({ length: Math.min(CONNECTIONS, KEYS - k) }, (_, j) =>
            Promise.all([nativePut(k + j), s3Put(k + j)]),
          ),
        );
      }
      const rows: Record<string, Rate[]> = {
        nativePut: [],
        s3Put: [],
        nullPut: [],
        nativeGet: [],
        s3Get: [],
        nullGet: [],
      };
      const pid = cluster.pid;
      for (let r = 0; r < ROUNDS; r++) {
        rows.nativePut?.push(await rate(pid, nativePut));
        rows.s3Put?.push(await rate(pid, s3Put));
        rows.nullPut?.push(await rate(nullS3.pid, nullPut));
        rows.nativeGet?.push(await rate(pid, nativeGet));
        rows.s3Get?.push(await rate(pid, s3Get));
        rows.nullGet?.push(await rate(nullS3.pid, nullGet));
      }
      for (const op of ["Put", "Get"] as const) {
        const nativeRows = rows[`native${op}`] ?? [];
        const s3Rows = rows[`s3${op}`] ?? [];
        const native = median(nativeRows.map((x) => x.perSec));
        const viaS3 = median(s3Rows.map((x) => x.perSec));
        const nativeCpu = median(nativeRows.map((x) => x.cpuUs));
        const s3Cpu = median(s3Rows.map((x) => x.cpuUs));
        const nativeClient = median(nativeRows.map((x) => x.clientUs));
        const s3Client = median(s3Rows.map((x) => x.clientUs));
        const nullRows = rows[`null${op}`] ?? [];
        const viaNull = median(nullRows.map((x) => x.perSec));
        const ratio = viaS3 / native;
        const ok = ratio >= TARGET_RATIO;
        if (!ok) failed = true;
        console.log(
          `${op.toUpperCase()} ${label}: native ${native.toFixed(0)}/s, S3 ${viaS3.toFixed(0)}/s, ratio ${ratio.toFixed(2)} ` +
            `(target >= ${TARGET_RATIO}: ${ok ? "met" : "NOT met"}); rounds native ${nativeRows.map((x) => x.perSec.toFixed(0)).join(", ")}, ` +
            `S3 ${s3Rows.map((x) => x.perSec.toFixed(0)).join(", ")}; cluster CPU per request native ${nativeCpu.toFixed(0)} µs, ` +
            `S3 ${s3Cpu.toFixed(0)} µs (native/S3 ${(nativeCpu / s3Cpu).toFixed(2)}); client CPU per request native ${nativeClient.toFixed(0)} µs, S3 SDK ${s3Client.toFixed(0)} µs`,
        );
        console.log(
          `  ceiling: the SDK against a server that does nothing ${viaNull.toFixed(0)}/s, ratio ${(viaNull / native).toFixed(2)} ` +
            `(rounds ${nullRows.map((x) => x.perSec.toFixed(0)).join(", ")}; client CPU per request ${median(nullRows.map((x) => x.clientUs)).toFixed(0)} µs); ` +
            `backpack's S3 front reaches ${(viaS3 / viaNull).toFixed(2)} of it`,
        );
      }
    }
    // Node requests per S3 GET: the nodes' own GET counters around 1,000 sequential GETs.
    const before = await nodeGets(cluster.nodes, agent);
    const N = 1000;
    for (let i = 0; i < N; i++) {
      const got = await s3.send(new GetObjectCommand({ Bucket: "bench", Key: `s3-1024/k${i % KEYS}` }));
      await got.Body?.transformToByteArray();
    }
    const perGet = ((await nodeGets(cluster.nodes, agent)) - before) / N;
    console.log(
      `node GETs per S3 GET (${N} GETs of existing objects): ${perGet.toFixed(3)} (target 1: ${perGet <= 1 ? "met" : "NOT met"})`,
    );
    if (failed) process.exitCode = 1;
  } finally {
    s3.destroy();
    ceiling.destroy();
    await nullS3.stop();
    await agent.close();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
