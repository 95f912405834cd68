import { Redis } from "ioredis";
import type { Logger } from "../common/logger.js";
import type { QueueEndpoint } from "../cluster/types.js";
import { ACK, type Script } from "./redis-scripts.js";

/** Keys not yet acknowledged on a server that was away, remembered so the ack lands when it returns. */
const MAX_PENDING_ACKS = 100_000;

/**
 * One Redis server of the queue. Commands never wait for a server that is down: the offline queue is off, so
 * a call fails at once while disconnected and has `commandTimeoutMs` when connected (a frozen server), while
 * ioredis keeps reconnecting in the background.
 */
export class RedisServerLink {
  readonly endpoint: string;
  readonly client: Redis;
  private readonly pendingAcks = new Set<string>();

  constructor(
    readonly server: QueueEndpoint,
    readonly prefix: string,
    private readonly log: Logger,
    options: { commandTimeoutMs: number; connectTimeoutMs: number },
  ) {
    this.endpoint = `${server.host}:${server.port}`;
    this.client = new Redis({
      host: server.host,
      port: server.port,
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: options.connectTimeoutMs,
      commandTimeout: options.commandTimeoutMs,
      // Reconnect quickly at first, then every 2 s: a restarted server is back in use within seconds.
      retryStrategy: (times: number) => Math.min(100 * times, 2000),
    });
    let wasDown = false;
    this.client.on("error", (err: Error) => {
      if (!wasDown) log.warn({ server: this.endpoint, err: err.message }, "queue server unreachable");
      wasDown = true;
    });
    this.client.on("ready", () => {
      if (wasDown) log.info({ server: this.endpoint }, "queue server back");
      wasDown = false;
      void this.flushPendingAcks();
    });
  }

  get up(): boolean {
    return this.client.status === "ready";
  }

  async connect(): Promise<void> {
    try {
      await this.client.connect();
    } catch {
      // Down at start: ioredis keeps retrying, and every operation skips this server meanwhile.
    }
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }

  /** Runs a script by SHA, loading it on NOSCRIPT (a restarted server has lost its script cache). */
  async run(script: Script, args: readonly (string | number)[]): Promise<unknown> {
    const keys = script.keys.map((k) => `${this.prefix}:${k}`);
    try {
      return await this.client.evalsha(script.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!String((err as Error).message).startsWith("NOSCRIPT")) throw err;
      return this.client.eval(script.lua, keys.length, ...keys, ...args);
    }
  }

  rememberAcks(ids: readonly string[]): void {
    for (const id of ids) {
      if (this.pendingAcks.size >= MAX_PENDING_ACKS) break;
      this.pendingAcks.add(id);
    }
  }

  takePendingAcks(): string[] {
    const ids = [...this.pendingAcks];
    this.pendingAcks.clear();
    return ids;
  }

  private async flushPendingAcks(): Promise<void> {
    if (this.pendingAcks.size === 0) return;
    const ids = this.takePendingAcks();
    try {
      for (let i = 0; i < ids.length; i += 1000) await this.run(ACK, ids.slice(i, i + 1000));
      this.log.info({ server: this.endpoint, acks: ids.length }, "queue server caught up on acks");
    } catch {
      this.rememberAcks(ids);
    }
  }
}
