import zookeeper from "node-zookeeper-client";
import type { Client, Event as ZkEvent, State } from "node-zookeeper-client";
import { BackpackError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";

/** ZooKeeper error codes this code branches on (node-zookeeper-client's `Exception` codes). */
export const ZK = {
  CONNECTION_LOSS: zookeeper.Exception.CONNECTION_LOSS,
  NO_NODE: zookeeper.Exception.NO_NODE,
  NODE_EXISTS: zookeeper.Exception.NODE_EXISTS,
  BAD_VERSION: zookeeper.Exception.BAD_VERSION,
  SESSION_EXPIRED: zookeeper.Exception.SESSION_EXPIRED,
} as const;

/** The ZooKeeper error code of a thrown value (negative numbers), if it is one. */
export function zkCode(err: unknown): number | undefined {
  if (err instanceof zookeeper.Exception) return err.getCode();
  return undefined;
}

/** How often a stalled connection attempt is looked for (see `unstick`). */
const STALL_MS = 2000;

export interface ZkNode {
  data: Buffer;
  version: number;
}

export type ZkOp =
  | { op: "create"; path: string; data: Buffer }
  | { op: "set"; path: string; data: Buffer; version: number }
  | { op: "check"; path: string; version: number };

export interface ZkConnectionOptions {
  connectString: string;
  sessionTimeoutMs: number;
  /** How long a request may wait (also for a connection) before failing with UNAVAILABLE. */
  requestTimeoutMs: number;
  log: Logger;
  /** Called on every (re)connection, also with a new session after expiry: re-read and re-watch there. */
  onConnected: () => void;
}

/**
 * One ZooKeeper session that survives: the client library reconnects by itself after a connection loss (same
 * session, watches re-sent); after a session expiry the client is dead, so a new one is built. Every request
 * waits for a connection and then for its answer, each bounded by `requestTimeoutMs`: the library itself
 * would queue requests forever while disconnected.
 */
export class ZkConnection {
  private client: Client | undefined;
  private stopped = true;
  private waiters = new Set<() => void>();
  private watchdog: NodeJS.Timeout | undefined;
  private stalledSocket: unknown;

  constructor(private readonly options: ZkConnectionOptions) {}

  get connected(): boolean {
    const state = this.client?.getState();
    return state === zookeeper.State.SYNC_CONNECTED || state === zookeeper.State.CONNECTED_READ_ONLY;
  }

  start(): void {
    this.stopped = false;
    this.build();
    this.watchdog = setInterval(() => this.unstick(), STALL_MS);
    this.watchdog.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.watchdog);
    this.client?.close();
    this.client = undefined;
    for (const wake of this.waiters) wake();
  }

  private build(): void {
    const client = zookeeper.createClient(this.options.connectString, {
      sessionTimeout: this.options.sessionTimeoutMs,
      spinDelay: 200,
    });
    this.client = client;
    client.on("state", (state: State) => this.onState(client, state));
    client.connect();
  }

  private onState(client: Client, state: State): void {
    if (client !== this.client || this.stopped) return;
    const { log, connectString } = this.options;
    if (state === zookeeper.State.SYNC_CONNECTED || state === zookeeper.State.CONNECTED_READ_ONLY) {
      log.info({ zk: connectString, session: client.getSessionId().toString("hex") }, "zookeeper connected");
      for (const wake of this.waiters) wake();
      this.options.onConnected();
    } else if (state === zookeeper.State.DISCONNECTED) {
      log.warn({ zk: connectString }, "zookeeper disconnected; serving the last known cluster map");
    } else if (state === zookeeper.State.EXPIRED) {
      log.warn({ zk: connectString }, "zookeeper session expired; opening a new session");
      client.close();
      this.build();
    }
  }

  /**
   * The library clears its connect timeout once TCP connects, so a server that accepts the connection but
   * never answers the handshake (one still starting up) leaves the client waiting forever. A socket that has
   * not completed its handshake within one or two ticks is destroyed: the library then tries the next server
   * with the same session.
   */
  private unstick(): void {
    if (this.connected || !this.client) {
      this.stalledSocket = undefined;
      return;
    }
    const manager = (this.client as unknown as { connectionManager?: { socket?: { destroy?: () => void } } })
      .connectionManager;
    const socket = manager?.socket;
    if (socket && socket === this.stalledSocket && typeof socket.destroy === "function") {
      this.options.log.debug({ zk: this.options.connectString }, "zookeeper handshake stalled; retrying");
      socket.destroy();
      this.stalledSocket = undefined;
    } else {
      this.stalledSocket = socket;
    }
  }

  /** Resolves once connected; rejects with UNAVAILABLE (naming the connection string) after `timeoutMs`. */
  async waitConnected(timeoutMs = this.options.requestTimeoutMs): Promise<Client> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.stopped || !this.client) throw new BackpackError("UNAVAILABLE", "the cluster map is stopped");
      if (this.connected) return this.client;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new BackpackError(
          "UNAVAILABLE",
          `cannot reach ZooKeeper at ${this.options.connectString} (waited ${Math.round(timeoutMs / 1000)} s)`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        const waiters = this.waiters;
        function done(): void {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
  }

  /** Runs one request on a connected client, bounded by the request timeout. */
  private async call<T>(
    what: string,
    fn: (client: Client, cb: (err: unknown, value?: T) => void) => void,
  ): Promise<T> {
    const client = await this.waitConnected();
    const timeoutMs = this.options.requestTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new BackpackError(
            "UNAVAILABLE",
            `ZooKeeper at ${this.options.connectString} did not answer ${what} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      try {
        fn(client, (err, value) => {
          clearTimeout(timer);
          if (err) reject(err);
          else resolve(value as T);
        });
      } catch (err) {
        // The library validates arguments by throwing.
        clearTimeout(timer);
        reject(err);
      }
    });
  }

  /** The node's data and version, or undefined when it does not exist. A watcher also fires on creation. */
  async get(path: string, watcher?: (event: ZkEvent) => void): Promise<ZkNode | undefined> {
    try {
      return await this.call<ZkNode>(`get ${path}`, (client, cb) => {
        const done = (err: unknown, data: Buffer | undefined, stat: { version: number } | undefined): void =>
          err ? cb(err) : cb(null, { data: data ?? Buffer.alloc(0), version: stat?.version ?? 0 });
        if (watcher) client.getData(path, watcher, done);
        else client.getData(path, done);
      });
    } catch (err) {
      if (zkCode(err) !== ZK.NO_NODE) throw err;
    }
    if (!watcher) return undefined;
    // Absent: watch for its creation. It may have been created in between: then read it.
    const exists = await this.call<boolean>(`exists ${path}`, (client, cb) =>
      client.exists(path, watcher, (err, stat) => (err ? cb(err) : cb(null, Boolean(stat)))),
    );
    return exists ? this.get(path, watcher) : undefined;
  }

  async mkdirp(path: string): Promise<void> {
    await this.call<string>(`mkdirp ${path}`, (client, cb) => client.mkdirp(path, cb));
  }

  /** One atomic multi-op: every op applies or none; throws the failing op's ZooKeeper exception. */
  async multi(ops: readonly ZkOp[]): Promise<void> {
    await this.call<unknown>("a change", (client, cb) => {
      const tx = client.transaction();
      for (const o of ops) {
        if (o.op === "create") tx.create(o.path, o.data);
        else if (o.op === "set") tx.setData(o.path, o.data, o.version);
        else tx.check(o.path, o.version);
      }
      pinVersions(tx, ops);
      tx.commit((err) => cb(err));
    });
  }
}

/**
 * node-zookeeper-client 1.1.3's `Transaction.setData/check` turn version 0 into -1 ("any version")
 * (`version = version || -1`), which would make the first update of every znode an unconditional write and
 * lose concurrent updates. The ops it queued are plain objects: put the versions back as given.
 */
function pinVersions(tx: unknown, ops: readonly ZkOp[]): void {
  const queued = (tx as { ops?: unknown }).ops;
  if (!Array.isArray(queued) || queued.length !== ops.length) {
    throw new BackpackError("INTERNAL", "unexpected node-zookeeper-client transaction layout");
  }
  ops.forEach((o, i) => {
    if (o.op !== "create") (queued[i] as { version: number }).version = o.version;
  });
}
