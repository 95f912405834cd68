import type { Event as ZkEvent } from "node-zookeeper-client";
import type { Logger } from "../common/logger.js";
import {
  adminNodes,
  decodeSnapshot,
  EMPTY_SNAPSHOT,
  isObject,
  rawNode,
  sameSnapshot,
  SHARDS_MAP,
  shardSizeNode,
  type RawNode,
} from "./layout.js";
import type { ChangeListeners } from "./listeners.js";
import type { ClusterSnapshot } from "./types.js";
import type { ZkConnection } from "./zk-connection.js";

/**
 * The local copy of the map's znodes, kept current by watches. Every read sets a watch (one watcher function,
 * so the library never holds duplicates); a fired watch re-reads only the znode that changed (and, for the
 * shards map, the size znodes of new shards), which re-arms it. A (re)connection re-reads everything. While
 * ZooKeeper is away the copy stays as it was: readers keep the last known map.
 */
export class ZkMirror {
  private state = new Map<string, RawNode>();
  private dirty = new Set<string>();
  private everything = true;
  private running: Promise<void> | undefined;
  private current: ClusterSnapshot = EMPTY_SNAPSHOT;
  stopped = false;

  constructor(
    private readonly conn: ZkConnection,
    private readonly root: string,
    private readonly log: Logger,
    private readonly listeners: ChangeListeners,
  ) {}

  readonly watcher = (event: ZkEvent): void => {
    const path = event.getPath();
    const prefix = this.root === "/" ? "/" : `${this.root}/`;
    if (path.startsWith(prefix)) this.dirty.add(path.slice(prefix.length));
    else this.everything = true;
    this.kick();
  };

  snapshot(): ClusterSnapshot {
    return this.current;
  }

  /** Re-reads everything (on every connection); failures are logged, the next connection retries. */
  refreshAll(): void {
    this.everything = true;
    this.kick();
  }

  /** Reads everything now; throws when it cannot (the first load of `start()`). */
  async load(): Promise<void> {
    this.stopped = false;
    await this.running;
    await this.readAll();
    this.everything = false;
    this.publish();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  private path(node: string): string {
    return this.root === "/" ? `/${node}` : `${this.root}/${node}`;
  }

  private kick(): void {
    if (this.running || this.stopped) return;
    this.running = this.drain()
      .catch((err: unknown) =>
        this.log.warn({ err }, "cluster map refresh failed; serving the last known map"),
      )
      .finally(() => {
        this.running = undefined;
      });
  }

  private async drain(): Promise<void> {
    while (!this.stopped && (this.everything || this.dirty.size > 0)) {
      const full = this.everything;
      const nodes = [...this.dirty];
      this.everything = false;
      this.dirty.clear();
      try {
        if (full) await this.readAll();
        else await this.readSome(nodes);
      } catch (err) {
        // Keep what is left to read; the next (re)connection calls refreshAll().
        if (full) this.everything = true;
        for (const n of nodes) this.dirty.add(n);
        throw err;
      }
      this.publish();
    }
  }

  private async readOne(state: Map<string, RawNode>, node: string): Promise<void> {
    const got = await this.conn.get(this.path(node), this.watcher);
    if (got) state.set(node, rawNode(got.data.toString("utf8")));
    else state.delete(node);
  }

  private async readAll(): Promise<void> {
    const state = new Map<string, RawNode>();
    await this.readOne(state, SHARDS_MAP);
    const rest = adminNodes(state.get(SHARDS_MAP)).filter((n) => n !== SHARDS_MAP);
    await Promise.all(rest.map((n) => this.readOne(state, n)));
    this.state = state;
  }

  private async readSome(nodes: readonly string[]): Promise<void> {
    const state = new Map(this.state);
    await Promise.all(nodes.map((n) => this.readOne(state, n)));
    if (nodes.includes(SHARDS_MAP)) {
      const shards = state.get(SHARDS_MAP)?.data;
      const missing = isObject(shards)
        ? Object.keys(shards)
            .map(shardSizeNode)
            .filter((n) => !state.has(n))
        : [];
      await Promise.all(missing.map((n) => this.readOne(state, n)));
    }
    this.state = state;
  }

  private publish(): void {
    const next = decodeSnapshot(this.state);
    if (sameSnapshot(next, this.current)) return;
    this.current = next;
    this.listeners.emit(next);
  }
}
