/**
 * The original's layout of the cluster map, as named JSON documents (znodes under the root path in ZooKeeper,
 * entries of one file in the embedded map):
 *
 *   servers-map        {"<id>":{"host":"one","port":"10001"}}        port a string; https adds "scheme":"https"
 *   shards-map         {"<id>":{"nodes":["1","4"],"read_only":true}} read_only present only while disabled
 *   shard-size-<id>    {"capacity":<bytes>,"current":<bytes>}
 *   queue              {"key":"backpack-queue","servers":[{"host":"one","port":"13001"}]}
 *   settings           {"version":3,"logLevel":"debug","clientRate":null,"blocklist":[]}   (ours: settings.ts)
 *   s3                 {"keys":{"<id>":{"secret","name","created","grants":{"<bucket>":"read"}}},
 *                       "buckets":{"<name>":{"created","owner","shards":["1","2"]}}}         (ours: docs/s3.md)
 *
 * Reading is lenient (a cluster set up by the original tools, or a hand-edited znode, must keep working);
 * fields this code does not know are kept when a document is rewritten.
 */
import { sanitizeBytes } from "./rules.js";
import { decodeSettings, NO_SETTINGS } from "./settings.js";
import type {
  ClusterSnapshot,
  QueueEndpoint,
  QueueSettings,
  S3AccessKey,
  S3Bucket,
  S3Config,
  S3Permission,
  ServerInfo,
  ShardInfo,
} from "./types.js";

export const SERVERS_MAP = "servers-map";
export const SHARDS_MAP = "shards-map";
export const QUEUE = "queue";
export const SETTINGS = "settings";
export const SHARD_SIZE_PREFIX = "shard-size-";
export const S3 = "s3";

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
  return [SERVERS_MAP, SHARDS_MAP, QUEUE, SETTINGS, S3, ...[...ids].map(shardSizeNode)];
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
    s3: decodeS3(state.get(S3)?.data),
  };
}

const PERMISSIONS: readonly string[] = ["read", "write", "owner"] satisfies S3Permission[];

/** The S3 document, leniently: entries that do not have the expected shape are left out. */
export function decodeS3(data: unknown): S3Config {
  const keys = idRecord<S3AccessKey>();
  const buckets = idRecord<S3Bucket>();
  const doc = isObject(data) ? data : {};
  for (const [id, v] of Object.entries(isObject(doc.keys) ? doc.keys : {})) {
    if (!isObject(v) || typeof v.secret !== "string") continue;
    const grants = idRecord<S3Permission>();
    for (const [bucket, p] of Object.entries(isObject(v.grants) ? v.grants : {})) {
      if (typeof p === "string" && PERMISSIONS.includes(p)) grants[bucket] = p as S3Permission;
    }
    keys[id] = {
      id,
      secret: v.secret,
      name: typeof v.name === "string" ? v.name : "",
      created: typeof v.created === "string" ? v.created : "",
      grants,
    };
  }
  for (const [name, v] of Object.entries(isObject(doc.buckets) ? doc.buckets : {})) {
    if (!isObject(v) || !Array.isArray(v.shards)) continue;
    buckets[name] = {
      name,
      created: typeof v.created === "string" ? v.created : "",
      owner: typeof v.owner === "string" ? v.owner : "",
      shards: v.shards.filter((s): s is string => typeof s === "string"),
    };
  }
  return { keys, buckets };
}

export function encodeS3(s3: S3Config): JsonObject {
  const keys: JsonObject = {};
  for (const k of Object.values(s3.keys)) {
    keys[k.id] = { secret: k.secret, name: k.name, created: k.created, grants: { ...k.grants } };
  }
  const buckets: JsonObject = {};
  for (const b of Object.values(s3.buckets)) {
    buckets[b.name] = { created: b.created, owner: b.owner, shards: [...b.shards] };
  }
  return { keys, buckets };
}

export const EMPTY_SNAPSHOT: ClusterSnapshot = Object.freeze({
  initialized: false,
  servers: Object.freeze(idRecord<ServerInfo>()),
  shards: Object.freeze(idRecord<ShardInfo>()),
  queue: undefined,
  settings: NO_SETTINGS,
  s3: Object.freeze({
    keys: Object.freeze(idRecord<S3AccessKey>()),
    buckets: Object.freeze(idRecord<S3Bucket>()),
  }),
});

/** Two snapshots with the same content (listeners only hear about real changes). */
export function sameSnapshot(a: ClusterSnapshot, b: ClusterSnapshot): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
