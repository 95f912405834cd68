import { randomBytes } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { request } from "undici";
import { checksum, formatChecksum } from "../../src/common/checksum.js";
import { openClusterMap } from "../../src/cluster/open.js";
import type { ClusterMap, QueueSettings } from "../../src/cluster/types.js";
import type { ReplicationTask } from "../../src/queue/types.js";
import { startProcess, type ChildHandle } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { freePort } from "../helpers/wait.js";

type After = { after: (fn: () => Promise<unknown>) => void };

export interface TestNode {
  child: ChildHandle;
  dir: string;
  url: string;
}

/** Real `backpack node` processes, each on a fixed free port (so a restart keeps its URL). */
export async function startNodes(t: After, count: number): Promise<TestNode[]> {
  return Promise.all(
    Array.from({ length: count }, async () => {
      const dir = await tempDir(t, "backpack-node-");
      const port = await freePort();
      const child = await startProcess(t, {
        command: "backpack",
        args: ["node", dir, "127.0.0.1", String(port)],
      });
      return { child, dir, url: `http://127.0.0.1:${port}` };
    }),
  );
}

/**
 * An embedded cluster map file with servers "1".."n" and the given shards (enabled), plus queue settings.
 * Returns the file and a started map on it (stopped after the test).
 */
export async function clusterMap(
  t: After,
  nodes: readonly TestNode[],
  shards: Record<string, string[]>,
  queue: QueueSettings,
): Promise<{ file: string; map: ClusterMap }> {
  const file = join(await tempDir(t, "backpack-map-"), "cluster.json");
  const map = openClusterMap({ file });
  await map.start();
  t.after(() => map.stop());
  await map.init(queue);
  for (const [i, n] of nodes.entries()) await map.addServer(String(i + 1), n.url);
  for (const [id, servers] of Object.entries(shards)) {
    await map.addShard(id, servers, 1 << 30);
    await map.setShardEnabled(id, true);
  }
  return { file, map };
}

export function randomBody(size: number): Buffer {
  return randomBytes(size);
}

export async function put(url: string, key: string, body: Buffer): Promise<string> {
  const res = await request(`${url}/${key}`, {
    method: "PUT",
    body,
    headers: { "content-length": String(body.length) },
  });
  await res.body.dump();
  if (res.statusCode !== 201) throw new Error(`PUT ${url}/${key} answered ${res.statusCode}`);
  return formatChecksum(checksum(body));
}

/** The checksum a node holds for a key, or undefined. */
export async function crcOn(url: string, key: string): Promise<string | undefined> {
  const res = await request(`${url}/${key}`, { method: "HEAD" });
  await res.body.dump();
  if (res.statusCode !== 200) return undefined;
  const h = res.headers["x-backpack-checksum"];
  return typeof h === "string" ? h : undefined;
}

export async function nodeStats(url: string): Promise<{ puts: { count: number } }> {
  const res = await request(`${url}/stats`);
  return (await res.body.json()) as { puts: { count: number } };
}

export function copyTask(
  key: string,
  crc: string,
  size: number,
  sources: string[],
  target: string,
  shard = "1",
): ReplicationTask {
  return { op: "copy", shard, sources, target, key, crc, size, createdAt: Date.now() };
}

/** Flips one byte of `body` where a node stored it on disk (the node must not serve it as good data). */
export async function corruptOnDisk(dir: string, body: Buffer): Promise<string> {
  const needle = body.subarray(0, 64);
  for (const name of await readdir(dir, { recursive: true })) {
    const path = join(dir, name);
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch {
      continue;
    }
    const at = data.indexOf(needle);
    if (at < 0) continue;
    const i = at + Math.floor(body.length / 2);
    data[i] = (data[i] ?? 0) ^ 0xff;
    await writeFile(path, data);
    return path;
  }
  throw new Error("the body was not found on disk");
}
