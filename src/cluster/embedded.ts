import type { RuntimeSettings, SettingsPatch } from "./settings.js";
import { watch, type FSWatcher } from "node:fs";
import { mkdir, open, readFile, rename, unlink } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { BackpackError, systemCode } from "../common/errors.js";
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
  type Change,
} from "./changes.js";
import { withFileLock } from "./file-lock.js";
import { decodeSnapshot, EMPTY_SNAPSHOT, isObject, rawNode, sameSnapshot, type RawNode } from "./layout.js";
import { parseServerIds } from "./rules.js";
import type {
  AddShardResult,
  ClusterMap,
  ClusterSnapshot,
  InitResult,
  QueueSettings,
  S3Edit,
} from "./types.js";
import { ChangeListeners } from "./listeners.js";

/** The file's content: the original's documents by name, plus a version bumped by every write. */
interface MapFile {
  format: typeof FORMAT;
  version: number;
  nodes: Record<string, unknown>;
}

const FORMAT = "backpack-cluster-map/1";

export interface EmbeddedClusterMapOptions {
  /** The JSON file holding the map (created on the first change). */
  file: string;
  log?: Logger;
  /** Safety net for missed file-system events, ms. */
  pollIntervalMs?: number;
}

/**
 * The cluster map in one JSON file, for the one-process cluster and for tests without ZooKeeper. Every change
 * runs under a lock file (so two processes sharing the file never lose an update), re-reads the file, applies
 * the same change functions as the ZooKeeper map, and replaces the file atomically (temp file, fsync, rename,
 * fsync of the directory). Other processes see changes through a file-system watch.
 */
export class EmbeddedClusterMap implements ClusterMap {
  readonly description: string;
  private readonly file: string;
  private readonly log: Logger;
  private readonly pollIntervalMs: number;
  private current: ClusterSnapshot = EMPTY_SNAPSHOT;
  private version = -1;
  private readonly listeners: ChangeListeners;
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private started = false;
  /** Serialises this process's changes (the lock file serialises processes). */
  private tail: Promise<unknown> = Promise.resolve();
  private reloading: Promise<void> | undefined;
  private reloadAgain = false;

  constructor(options: EmbeddedClusterMapOptions) {
    this.file = options.file;
    this.description = `file:${options.file}`;
    this.log = options.log ?? silentLogger;
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
    this.listeners = new ChangeListeners(this.log);
  }

  get connected(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    if (this.started) return;
    await mkdir(dirname(this.file), { recursive: true });
    this.watcher = watch(dirname(this.file), { persistent: false }, (_event, name) => {
      if (name === null || name === basename(this.file)) this.scheduleReload();
    });
    this.watcher.on("error", (err) => this.log.warn({ err }, "cluster map file watch failed"));
    this.poll = setInterval(() => this.scheduleReload(), this.pollIntervalMs);
    this.poll.unref();
    this.started = true;
    await this.reload();
  }

  async stop(): Promise<void> {
    this.started = false;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.poll) clearInterval(this.poll);
    this.poll = undefined;
    await this.tail.catch(() => undefined);
    await this.reloading;
  }

  snapshot(): ClusterSnapshot {
    return this.current;
  }

  onChange(listener: (snapshot: ClusterSnapshot) => void): () => void {
    return this.listeners.add(listener);
  }

  async init(queue: QueueSettings): Promise<InitResult> {
    return this.apply(initChange(queue));
  }

  async addServer(id: string, url: string): Promise<void> {
    await this.apply(addServerChange(id, url));
  }

  async addShard(id: string, servers: string[], capacity: number): Promise<AddShardResult> {
    return this.apply(addShardChange(id, parseServerIds(servers.join(",")), capacity));
  }

  async setShardServers(id: string, servers: string[], options: { force?: boolean } = {}): Promise<void> {
    await this.apply(setShardServersChange(id, parseServerIds(servers.join(",")), options.force === true));
  }

  async setShardEnabled(id: string, enabled: boolean): Promise<void> {
    await this.apply(setShardEnabledChange(id, enabled));
  }

  async setQueue(queue: QueueSettings): Promise<void> {
    await this.apply(setQueueChange(queue));
  }

  async setSettings(patch: SettingsPatch): Promise<RuntimeSettings> {
    return this.apply(setSettingsChange(patch));
  }

  async updateS3<R>(edit: S3Edit<R>): Promise<R> {
    return this.apply(updateS3Change(edit));
  }

  async addUsage(deltas: Readonly<Record<string, number>>): Promise<void> {
    const { skipped } = await this.apply(addUsageChange(deltas));
    if (skipped.length > 0) this.log.warn({ shards: skipped }, "usage for unknown shards dropped");
  }

  private apply<R>(change: Change<R>): Promise<R> {
    const run = this.tail.then(() => withFileLock(`${this.file}.lock`, () => this.applyLocked(change)));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async applyLocked<R>(change: Change<R>): Promise<R> {
    const doc = (await this.readFile()) ?? { format: FORMAT, version: 0, nodes: {} };
    const plan = change(stateOf(doc), this.description);
    if (plan.writes.length > 0) {
      doc.version += 1;
      for (const w of plan.writes) doc.nodes[w.node] = w.value;
      await writeAtomic(this.file, JSON.stringify(doc, null, 2) + "\n");
    }
    this.adopt(doc);
    return plan.result;
  }

  private async readFile(): Promise<MapFile | undefined> {
    let text: string;
    try {
      text = await readFile(this.file, "utf8");
    } catch (err) {
      if (systemCode(err) === "ENOENT") return undefined;
      throw err;
    }
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch {
      doc = undefined;
    }
    if (!isObject(doc) || doc.format !== FORMAT || !Number.isInteger(doc.version) || !isObject(doc.nodes)) {
      throw new BackpackError("CONFLICT", `${this.file} is not a backpack cluster map file (${FORMAT})`);
    }
    return doc as unknown as MapFile;
  }

  private adopt(doc: MapFile | undefined): void {
    const version = doc?.version ?? 0;
    if (version === this.version) return;
    this.version = version;
    const next = doc ? decodeSnapshot(stateOf(doc)) : EMPTY_SNAPSHOT;
    if (sameSnapshot(next, this.current)) return;
    this.current = next;
    this.listeners.emit(next);
  }

  private scheduleReload(): void {
    if (!this.started) return;
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = this.reload()
      .catch((err: unknown) => this.log.warn({ err, file: this.file }, "cluster map file unreadable"))
      .finally(() => {
        this.reloading = undefined;
        if (this.reloadAgain) {
          this.reloadAgain = false;
          this.scheduleReload();
        }
      });
  }

  private async reload(): Promise<void> {
    this.adopt(await this.readFile());
  }
}

function stateOf(doc: MapFile): Map<string, RawNode> {
  const state = new Map<string, RawNode>();
  for (const [name, value] of Object.entries(doc.nodes)) state.set(name, rawNode(JSON.stringify(value)));
  return state;
}

/** Replaces `file` so that a crash leaves either the old or the new content, never a mix. */
export async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    const fh = await open(tmp, "w");
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  // The rename is durable only once the directory entry is.
  const dir = await open(dirname(file), "r");
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
