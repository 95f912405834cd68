/**
 * The original's layout of the cluster map, as named JSON documents (znodes under the root path in ZooKeeper,
 * entries of one file in the embedded map):
 *
 *   servers-map        {"<id>":{"host":"one","port":"10001"}}        port a string; https adds "scheme":"https"
 *   shards-map         {"<id>":{"nodes":["1","4"],"read_only":true}} read_only present only while disabled
 *   shard-size-<id>    {"capacity":<bytes>,"current":<bytes>}
 *   queue              {"key":"backpack-queue","servers":[{"host":"one","port":"13001"}]}
 *   settings           {"version":3,"logLevel":"debug","clientRate":null,"blocklist":[]}   (ours: settings.ts)
 *
 * Reading is lenient (a cluster set up by the original tools, or a hand-edited znode, must keep working);
 * fields this code does not know are kept when a document is rewritten.
 */
import { sanitizeBytes } from "./rules.js";
import { decodeSettings, NO_SETTINGS } from "./settings.js";
import type { ClusterSnapshot, QueueEndpoint, QueueSettings, ServerInfo, ShardInfo } from "./types.js";

export const SERVERS_MAP = "servers-map";
export const SHARDS_MAP = "shards-map";
export const QUEUE = "queue";
export const SETTINGS = "settings";
export const SHARD_SIZE_PREFIX = "shard-size-";

export function shardSizeNode(shardId: string): string {
  return `${SHARD_SIZE_PREFIX}${shardId}`;
}

/** One document as read: `data` is the parsed JSON, or undefined when the text is not JSON. */
export interface RawNode {
  text: string;
  data: unknown;
}

/** Document name → content; a name that is absent means the document does not exist. */
export type RawState = ReadonlyMap<string, RawNode>;

export function rawNode(text: string): RawNode {
  try {
    return { text, data: JSON.parse(text) as unknown };
  } catch {
    return { text, data: undefined };
  }
}

export type JsonObject = Record<string, unknown>;

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The documents an admin change reads: the maps, the queue and every shard's size (plus `extraShards`). */
export function adminNodes(shardsMap: RawNode | undefined, extraShards: readonly string[] = []): string[] {
  const ids = new Set(extraShards);
  if (shardsMap && isObject(shardsMap.data)) for (const id of Object.keys(shardsMap.data)) ids.add(id);
  return [SERVERS_MAP, SHARDS_MAP, QUEUE, SETTINGS, ...[...ids].map(shardSizeNode)];
}

export function serverUrl(host: string, port: string | number, scheme: string): string {
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `${scheme === "https" ? "https" : "http"}://${h}:${port}`;
}

/**
 * A record keyed by ids that come from outside (the map, a request path, a task): without a prototype, so that
 * `shards["__proto__"]` or `servers["constructor"]` is simply absent, never an inherited member.
 */
function idRecord<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

function decodeServers(data: unknown): Record<string, ServerInfo> {
  const out = idRecord<ServerInfo>();
  if (!isObject(data)) return out;
  for (const [id, v] of Object.entries(data)) {
    if (!isObject(v) || typeof v.host !== "string") continue;
    const port = v.port;
    if (!(typeof port === "string" && /^\d+$/.test(port)) && !Number.isInteger(port)) continue;
    const scheme = typeof v.scheme === "string" ? v.scheme : "http";
    out[id] = { id, url: serverUrl(v.host, port as string | number, scheme) };
  }
  return out;
}

function decodeShards(data: unknown, state: RawState): Record<string, ShardInfo> {
  const out = idRecord<ShardInfo>();
  if (!isObject(data)) return out;
  for (const [id, v] of Object.entries(data)) {
    if (!isObject(v)) continue;
    const nodes = Array.isArray(v.nodes) ? v.nodes : [];
    const servers = nodes
      .filter((n): n is string | number => typeof n === "string" || typeof n === "number")
      .map(String);
    const size = state.get(shardSizeNode(id))?.data;
    out[id] = {
      id,
      servers,
      // The original wrote read_only:true while disabled and removed it when enabled.
      enabled: v.read_only !== true && v.read_only !== "true",
      capacity: isObject(size) ? sanitizeBytes(size.capacity) : 0,
      used: isObject(size) ? sanitizeBytes(size.current) : 0,
    };
  }
  return out;
}

export function decodeQueue(data: unknown): QueueSettings | undefined {
  if (!isObject(data) || typeof data.key !== "string" || !Array.isArray(data.servers)) return undefined;
  const servers: QueueEndpoint[] = [];
  for (const s of data.servers as unknown[]) {
    if (!isObject(s) || typeof s.host !== "string") continue;
    const port = Number(s.port);
    if (Number.isInteger(port) && port > 0 && port < 65536) servers.push({ host: s.host, port });
  }
  return { key: data.key, servers };
}

export function encodeQueue(queue: QueueSettings): JsonObject {
  // Ports as strings, as the original's init wrote them.
  return { key: queue.key, servers: queue.servers.map((s) => ({ host: s.host, port: String(s.port) })) };
}

export function decodeSnapshot(state: RawState): ClusterSnapshot {
  const servers = state.get(SERVERS_MAP);
  const shards = state.get(SHARDS_MAP);
  return {
    initialized: servers !== undefined && shards !== undefined,
    servers: decodeServers(servers?.data),
    shards: decodeShards(shards?.data, state),
    queue: decodeQueue(state.get(QUEUE)?.data),
    settings: decodeSettings(state.get(SETTINGS)?.data),
  };
}

export const EMPTY_SNAPSHOT: ClusterSnapshot = Object.freeze({
  initialized: false,
  servers: Object.freeze(idRecord<ServerInfo>()),
  shards: Object.freeze(idRecord<ShardInfo>()),
  queue: undefined,
  settings: NO_SETTINGS,
});

/** Two snapshots with the same content (listeners only hear about real changes). */
export function sameSnapshot(a: ClusterSnapshot, b: ClusterSnapshot): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
