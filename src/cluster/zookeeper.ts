import type { RuntimeSettings, SettingsPatch } from "./settings.js";
import { setTimeout as sleep } from "node:timers/promises";
import { BackpackError } from "../common/errors.js";
import { silentLogger, type Logger } from "../common/logger.js";
import {
  addServerChange,
  addShardChange,
  addUsageChange,
  initChange,
  setQueueChange,
  setSettingsChange,
  setShardEnabledChange,
  setShardServersChange,
  updateS3Change,
  usageNodes,
  type Change,
} from "./changes.js";
import { adminNodes, rawNode, SHARDS_MAP, type RawNode } from "./layout.js";
import { ZkMirror } from "./zk-mirror.js";
import { ChangeListeners } from "./listeners.js";
import { parseServerIds } from "./rules.js";
import type {
  AddShardResult,
  ClusterMap,
  ClusterSnapshot,
  InitResult,
  QueueSettings,
  S3Edit,
} from "./types.js";
import { ZK, zkCode, ZkConnection, type ZkOp } from "./zk-connection.js";

export interface ZooKeeperClusterMapOptions {
  /** `host:port[,host:port...]`: every server of the ensemble. */
  connectString: string;
  /** Root path of this cluster's znodes, e.g. `/backpack`. */
  root: string;
  log?: Logger;
  connectTimeoutMs?: number;
  sessionTimeoutMs?: number;
}

/** Conflicting writers retry; this many conflicts in a row means something is wrong. */
const MAX_ATTEMPTS = 100;

/**
 * The cluster map in ZooKeeper, in the original's znode layout (see `layout.ts`). The local copy (`ZkMirror`)
 * is refreshed by watches and fully re-read on every (re)connection; it is kept as is while ZooKeeper is away. Every change is a multi-op that checks the version of every znode it
 * read, so concurrent admins and coordinators never overwrite each other: a conflict re-reads and retries.
 */
export class ZooKeeperClusterMap implements ClusterMap {
  readonly description: string;
  private readonly root: string;
  private readonly log: Logger;
  private readonly connectTimeoutMs: number;
  private readonly conn: ZkConnection;
  private readonly listeners: ChangeListeners;
  private readonly mirror: ZkMirror;
  private started = false;

  constructor(options: ZooKeeperClusterMapOptions) {
    const root = normalizeRoot(options.root);
    this.root = root;
    this.description = `zk://${options.connectString}${root}`;
    this.log = options.log ?? silentLogger;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    this.listeners = new ChangeListeners(this.log);
    this.conn = new ZkConnection({
      connectString: options.connectString,
      sessionTimeoutMs: options.sessionTimeoutMs ?? 10_000,
      requestTimeoutMs: this.connectTimeoutMs,
      log: this.log,
      onConnected: () => this.mirror.refreshAll(),
    });
    this.mirror = new ZkMirror(this.conn, root, this.log, this.listeners);
  }

  get connected(): boolean {
    return this.conn.connected;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.conn.start();
    try {
      await this.conn.waitConnected(this.connectTimeoutMs);
      // The first load must succeed before start() resolves; later refreshes only log their failures.
      await this.mirror.load();
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    this.started = false;
    this.conn.stop();
    await this.mirror.stop();
  }

  snapshot(): ClusterSnapshot {
    return this.mirror.snapshot();
  }

  onChange(listener: (snapshot: ClusterSnapshot) => void): () => void {
    return this.listeners.add(listener);
  }

  async init(queue: QueueSettings): Promise<InitResult> {
    const change = initChange(queue);
    if (this.root !== "/") await this.conn.mkdirp(this.root);
    return this.apply(change, () => adminNodes(undefined));
  }

  async addServer(id: string, url: string): Promise<void> {
    await this.apply(addServerChange(id, url), (shards) => adminNodes(shards));
  }

  async addShard(id: string, servers: string[], capacity: number): Promise<AddShardResult> {
    const change = addShardChange(id, parseServerIds(servers.join(",")), capacity);
    return this.apply(change, (shards) => adminNodes(shards, [id]));
  }

  async setShardServers(id: string, servers: string[], options: { force?: boolean } = {}): Promise<void> {
    const change = setShardServersChange(id, parseServerIds(servers.join(",")), options.force === true);
    await this.apply(change, (shards) => adminNodes(shards, [id]));
  }

  async setShardEnabled(id: string, enabled: boolean): Promise<void> {
    await this.apply(setShardEnabledChange(id, enabled), (shards) => adminNodes(shards));
  }

  async setQueue(queue: QueueSettings): Promise<void> {
    await this.apply(setQueueChange(queue), (shards) => adminNodes(shards));
  }

  async setSettings(patch: SettingsPatch): Promise<RuntimeSettings> {
    return this.apply(setSettingsChange(patch), (shards) => adminNodes(shards));
  }

  async updateS3<R>(edit: S3Edit<R>): Promise<R> {
    return this.apply(updateS3Change(edit), (shards) => adminNodes(shards));
  }

  async addUsage(deltas: Readonly<Record<string, number>>): Promise<void> {
    const nodes = usageNodes(deltas);
    if (nodes.length === 0) return;
    const { skipped } = await this.apply(addUsageChange(deltas), () => nodes, false);
    if (skipped.length > 0) this.log.warn({ shards: skipped }, "usage for unknown shards dropped");
  }

  private path(node: string): string {
    return this.root === "/" ? `/${node}` : `${this.root}/${node}`;
  }

  /** Reads `nodes` (after the shards map, which says which shard sizes an admin change needs). */
  private async read(
    nodesFor: (shardsMap: RawNode | undefined) => string[],
    needsShardsMap: boolean,
  ): Promise<{ state: Map<string, RawNode>; versions: Map<string, number> }> {
    const state = new Map<string, RawNode>();
    const versions = new Map<string, number>();
    const readOne = async (node: string): Promise<void> => {
      if (state.has(node)) return;
      const got = await this.conn.get(this.path(node));
      if (!got) return;
      state.set(node, rawNode(got.data.toString("utf8")));
      versions.set(node, got.version);
    };
    if (needsShardsMap) await readOne(SHARDS_MAP);
    await Promise.all(nodesFor(state.get(SHARDS_MAP)).map(readOne));
    return { state, versions };
  }

  private async apply<R>(
    change: Change<R>,
    nodesFor: (shardsMap: RawNode | undefined) => string[],
    needsShardsMap = true,
  ): Promise<R> {
    for (let attempt = 1; ; attempt++) {
      const { state, versions } = await this.read(nodesFor, needsShardsMap);
      const plan = change(state, this.description);
      if (plan.writes.length === 0) return plan.result;
      const written = new Set(plan.writes.map((w) => w.node));
      const ops: ZkOp[] = [];
      for (const [node, version] of versions) {
        if (!written.has(node)) ops.push({ op: "check", path: this.path(node), version });
      }
      const texts = new Map<string, string>();
      for (const w of plan.writes) {
        const text = JSON.stringify(w.value);
        texts.set(w.node, text);
        const data = Buffer.from(text);
        const version = versions.get(w.node);
        const path = this.path(w.node);
        ops.push(version === undefined ? { op: "create", path, data } : { op: "set", path, data, version });
      }
      try {
        await this.conn.multi(ops);
        return plan.result;
      } catch (err) {
        const code = zkCode(err);
        const conflict = code === ZK.BAD_VERSION || code === ZK.NODE_EXISTS || code === ZK.NO_NODE;
        const unknownOutcome =
          code === ZK.CONNECTION_LOSS ||
          code === ZK.SESSION_EXPIRED ||
          (err as { code?: unknown }).code === "UNAVAILABLE";
        if (!conflict && !unknownOutcome) throw err;
        if (unknownOutcome && (await this.applied(texts, versions))) return plan.result;
        if (attempt >= MAX_ATTEMPTS) {
          throw new BackpackError(
            "UNAVAILABLE",
            `${this.description}: gave up after ${attempt} conflicting updates`,
            {
              cause: err,
            },
          );
        }
        if (conflict) await sleep(Math.random() * Math.min(100, attempt * 5));
      }
    }
  }

  /**
   * After a lost connection the multi-op may or may not have applied. It did if every written znode now holds
   * exactly our text at the next version (a create: version 0).
   */
  private async applied(texts: Map<string, string>, versions: Map<string, number>): Promise<boolean> {
    for (const [node, text] of texts) {
      const got = await this.conn.get(this.path(node));
      const expected = (versions.get(node) ?? -1) + 1;
      if (!got || got.version !== expected || got.data.toString("utf8") !== text) return false;
    }
    return true;
  }
}

function normalizeRoot(root: string): string {
  const trimmed = root.trim().replace(/\/+$/, "");
  if (trimmed === "") return "/";
  if (!/^(\/[A-Za-z0-9_.-]+)+$/.test(trimmed)) {
    throw new BackpackError("INVALID_ARGUMENT", `ZooKeeper root "${root}" is not a path like /backpack`);
  }
  return trimmed;
}
