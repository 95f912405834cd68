/**
 * The rules every change of the cluster map obeys, shared by the ZooKeeper and the embedded implementation
 * (and by the admin commands, which parse their arguments with the same functions). Pure: no I/O.
 */
import { BackpackError } from "../common/errors.js";
import { formatBytes } from "../common/units.js";
import type { ClusterSnapshot, QueueEndpoint, QueueSettings, ShardInfo } from "./types.js";

/** Server and shard ids: they appear in `1,4` lists, znode names (`/shard-size-<id>`) and `<shard>:<key>`. */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function validateId(kind: "server" | "shard", id: string): string {
  if (!ID_PATTERN.test(id)) {
    throw new BackpackError(
      "INVALID_ARGUMENT",
      `${kind} id "${id}" is not valid: use 1-64 letters, digits, "_", "." or "-" (e.g. 1, node-4)`,
    );
  }
  return id;
}

export interface ServerAddress {
  scheme: "http" | "https";
  host: string;
  port: number;
  /** Normalised base URL without a trailing slash. */
  url: string;
}

/**
 * `http://one:10001` → its parts. The port must be explicit (the original stored host and port separately);
 * no path, query, fragment or credentials, since reads are built as `<url>/<key>`.
 */
export function parseServerUrl(text: string): ServerAddress {
  const m = /^(https?):\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})\/?$/.exec(
    text.trim(),
  );
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new BackpackError(
      "INVALID_ARGUMENT",
      `server url "${text}" is not valid: use http(s)://<host>:<port>, e.g. http://one:10001`,
    );
  }
  const scheme = m[1] as "http" | "https";
  const host = m[2] as string;
  return { scheme, host, port, url: `${scheme}://${host}:${port}` };
}

/** `1,4` → `["1","4"]`; refuses empty entries and the same server twice. */
export function parseServerIds(text: string): string[] {
  const ids = text.split(",").map((s) => s.trim());
  if (ids.some((s) => s === "")) {
    throw new BackpackError(
      "INVALID_ARGUMENT",
      `server ids "${text}" must be a comma-separated list of ids, e.g. 1,4`,
    );
  }
  for (const id of ids) validateId("server", id);
  checkNoDuplicates(ids);
  return ids;
}

function checkNoDuplicates(ids: readonly string[]): void {
  const seen = new Set<string>();
  for (const id of ids) {
    if (seen.has(id)) {
      throw new BackpackError(
        "INVALID_ARGUMENT",
        `server ${id} is listed twice: each replica needs its own server`,
      );
    }
    seen.add(id);
  }
}

/** `one:13001,two:13002` → endpoints (the original's form for Redis servers). */
export function parseQueueServers(text: string): QueueEndpoint[] {
  const parts = text.split(",").map((s) => s.trim());
  return parts.map((part) => {
    const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/.exec(part);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) {
      throw new BackpackError(
        "INVALID_ARGUMENT",
        `redis server "${part}" is not valid: use host:port[,host:port...], e.g. one:13001,two:13002`,
      );
    }
    return { host: m[1] as string, port };
  });
}

export function validateQueue(queue: QueueSettings): QueueSettings {
  // `file:<dir>` with no servers names the embedded on-disk queue of a one-process cluster.
  if (typeof queue.key === "string" && queue.key.startsWith("file:") && queue.servers.length === 0) {
    if (queue.key.length > 4096 || queue.key.length === 5) {
      throw new BackpackError("INVALID_ARGUMENT", "an embedded queue key must be file:<dir>");
    }
    return { key: queue.key, servers: [] };
  }
  if (typeof queue.key !== "string" || !/^[\x21-\x7e]{1,200}$/.test(queue.key)) {
    throw new BackpackError(
      "INVALID_ARGUMENT",
      `queue key "${String(queue.key)}" is not valid: use 1-200 printable characters without spaces`,
    );
  }
  if (queue.servers.length === 0) {
    throw new BackpackError("INVALID_ARGUMENT", "the queue needs at least one redis server (host:port)");
  }
  const servers = parseQueueServers(queue.servers.map((s) => `${s.host}:${s.port}`).join(","));
  return { key: queue.key, servers };
}

export function validateCapacity(capacity: number): number {
  if (!Number.isSafeInteger(capacity) || capacity <= 0) {
    throw new BackpackError(
      "INVALID_ARGUMENT",
      `capacity must be a whole number of bytes > 0, got ${capacity}`,
    );
  }
  return capacity;
}

/** A byte count read from the store: anything that is not a finite number ≥ 0 counts as 0. */
export function sanitizeBytes(value: unknown): number {
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof n === "number" && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

/** `1 [1, 4] 100gb read-only`: how messages show a shard. */
export function describeShard(shard: ShardInfo): string {
  const state = shard.enabled ? "writable" : "read-only";
  return `shard ${shard.id} [${shard.servers.join(", ")}] (${formatBytes(shard.capacity)}, ${state})`;
}

export function requireInitialized(snapshot: ClusterSnapshot, where: string): void {
  if (!snapshot.initialized) {
    throw new BackpackError(
      "NOT_INITIALIZED",
      `the cluster map at ${where} is not initialised: run backpack-coordinator-init first`,
    );
  }
}

function requireShard(snapshot: ClusterSnapshot, id: string): ShardInfo {
  const shard = snapshot.shards[id];
  if (!shard) {
    const known = Object.keys(snapshot.shards);
    throw new BackpackError(
      "NOT_FOUND",
      `unknown shard ${id} (known shards: ${known.length > 0 ? known.join(", ") : "none"})`,
    );
  }
  return shard;
}

/** Every server registered, none listed twice, none in a shard other than `shardId`. */
function checkShardServers(snapshot: ClusterSnapshot, shardId: string, servers: readonly string[]): void {
  if (servers.length === 0) throw new BackpackError("INVALID_ARGUMENT", "a shard needs at least one server");
  for (const id of servers) validateId("server", id);
  checkNoDuplicates(servers);
  const unknown = servers.filter((id) => !snapshot.servers[id]);
  if (unknown.length > 0) {
    throw new BackpackError(
      "NOT_FOUND",
      `unknown server${unknown.length > 1 ? "s" : ""} ${unknown.join(", ")}: register with backpack-coordinator-add-server first`,
    );
  }
  for (const other of Object.values(snapshot.shards)) {
    if (other.id === shardId) continue;
    const shared = servers.filter((id) => other.servers.includes(id));
    if (shared.length > 0) {
      throw new BackpackError(
        "CONFLICT",
        `server ${shared.join(", ")} already belongs to ${describeShard(other)}: a server holds one shard only`,
      );
    }
  }
}

export type AddShardPlan = { kind: "create" } | { kind: "noop" } | { kind: "capacity"; previous: number };

export function planAddShard(
  snapshot: ClusterSnapshot,
  id: string,
  servers: readonly string[],
  capacity: number,
): AddShardPlan {
  validateId("shard", id);
  validateCapacity(capacity);
  const existing = snapshot.shards[id];
  if (existing) {
    const same =
      existing.servers.length === servers.length && existing.servers.every((s, i) => s === servers[i]);
    if (!same) {
      throw new BackpackError(
        "CONFLICT",
        `cannot add shard ${id} with servers [${servers.join(", ")}]: it already exists as ${describeShard(existing)}; pick a new shard id, or change its servers with backpack-coordinator-set-shard-servers`,
      );
    }
    return existing.capacity === capacity
      ? { kind: "noop" }
      : { kind: "capacity", previous: existing.capacity };
  }
  checkShardServers(snapshot, id, servers);
  return { kind: "create" };
}

/** Returns false when the shard already has exactly these servers. */
export function planSetShardServers(
  snapshot: ClusterSnapshot,
  id: string,
  servers: readonly string[],
  force: boolean,
): boolean {
  const shard = requireShard(snapshot, id);
  checkShardServers(snapshot, id, servers);
  if (shard.servers.length === servers.length && shard.servers.every((s, i) => s === servers[i]))
    return false;
  const dropped = shard.servers.filter((s) => !servers.includes(s));
  if (dropped.length > 0 && shard.used > 0 && !force) {
    throw new BackpackError(
      "CONFLICT",
      `${describeShard(shard)} holds ${formatBytes(shard.used)}: dropping server ${dropped.join(", ")} would lose a replica of its data; copy the data first, or pass --force`,
    );
  }
  return true;
}

/** Returns false when the shard is already in that state. */
export function planSetShardEnabled(snapshot: ClusterSnapshot, id: string, enabled: boolean): boolean {
  const shard = requireShard(snapshot, id);
  if (enabled) {
    const missing = shard.servers.filter((s) => !snapshot.servers[s]);
    if (missing.length > 0) {
      throw new BackpackError(
        "CONFLICT",
        `cannot enable ${describeShard(shard)}: server ${missing.join(", ")} is not registered (backpack-coordinator-add-server)`,
      );
    }
  }
  return shard.enabled !== enabled;
}
