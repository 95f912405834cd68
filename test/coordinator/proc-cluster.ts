import assert from "node:assert/strict";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { ChildHandle, runBin, startProcess } from "../helpers/process.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { freePort, waitFor } from "../helpers/wait.js";

/**
 * A cluster of real processes: storage nodes on fixed free ports (so a SIGKILLed node comes back where the map
 * says it is), coordinators and replicators, over a cluster map named by `zk`/`root` (a real ZooKeeper, or
 * `file:<path>`). Every process is SIGKILLed after the test if still running.
 */
export class ProcCluster {
  readonly nodes = new Map<string, ChildHandle>();
  readonly nodeUrls = new Map<string, string>();
  readonly coordinators: ChildHandle[] = [];
  readonly replicators: ChildHandle[] = [];

  constructor(
    private readonly t: Pick<TestContext, "after">,
    readonly dir: string,
    readonly zk: string,
    readonly root: string,
  ) {}

  static async create(t: Pick<TestContext, "after">, zk?: string, root = "/backpack"): Promise<ProcCluster> {
    const dir = await mkdtemp(join(tmpdir(), "backpack-cluster-"));
    const c = new ProcCluster(t, dir, zk ?? `file:${join(dir, "cluster.json")}`, root);
    // Every process first, then the temp dir (one hook: the order of separate hooks is not ours to choose).
    t.after(async () => {
      c.stopped = true;
      await Promise.all(c.all.map((p) => p.kill("SIGKILL")));
      await rm(dir, { recursive: true, force: true });
    });
    return c;
  }

  /** Every process started through this cluster (also those started with `track`). */
  private readonly all: ChildHandle[] = [];

  /** Set once the after hook has begun killing every process: a restart under way must not outlive it. */
  stopped = false;

  /** Starts a process that is killed before the cluster's temp dir is removed. */
  async track(options: Parameters<typeof startProcess>[1]): Promise<ChildHandle> {
    const handle = new ChildHandle(options);
    this.all.push(handle);
    return handle.start();
  }

  /** Runs an admin command against this cluster's map; asserts exit 0 and returns stdout. */
  async admin(name: string, ...args: string[]): Promise<string> {
    const r = await runBin(name, [this.zk, this.root, ...args]);
    assert.equal(r.code, 0, `${name} ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
  }

  async startNode(id: string, extra: string[] = []): Promise<ChildHandle> {
    const port = await freePort();
    const node = await this.track({
      command: "backpack",
      args: [join(this.dir, `node-${id}`), "127.0.0.1", String(port), "--sync", "batch", ...extra],
    });
    this.nodes.set(id, node);
    this.nodeUrls.set(id, `http://127.0.0.1:${port}`);
    return node;
  }

  async startCoordinator(extra: string[] = []): Promise<ChildHandle> {
    const c = await this.track({
      command: "backpack-coordinator",
      args: [this.zk, this.root, "127.0.0.1", "0", "--usage-flush", "200ms", ...extra],
    });
    this.coordinators.push(c);
    return c;
  }

  async startReplicator(concurrency = 8): Promise<ChildHandle> {
    const r = await this.track({
      command: "backpack-replicator",
      args: [this.zk, this.root, String(concurrency), "--listen", "127.0.0.1:0"],
    });
    this.replicators.push(r);
    return r;
  }

  /** GET straight from a node. */
  async fromNode(id: string, key: string): Promise<{ status: number; body: Buffer }> {
    const res = await fetch(`${this.nodeUrls.get(id)}/${key}`).catch(() => undefined);
    if (res === undefined) return { status: 0, body: Buffer.alloc(0) };
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
  }

  /** Waits until every node in `ids` holds `key` with exactly `body`. */
  async waitHeldBy(ids: readonly string[], key: string, body: Buffer, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      async () => {
        for (const id of ids) {
          const got = await this.fromNode(id, key);
          if (got.status !== 200 || !got.body.equals(body)) return false;
        }
        return true;
      },
      { timeoutMs, what: `${key} on nodes ${ids.join(",")}` },
    );
  }
}

/** `PUT` through a coordinator with fetch (what `curl -X PUT -T` does). */
export async function upload(
  base: string,
  key: string,
  body: Buffer | string,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown>; queued: string | null }> {
  const res = await fetch(`${base}/${key}`, { method: "PUT", body, headers });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = { raw: text };
  }
  return { status: res.status, json, queued: res.headers.get("x-backpack-queued") };
}
