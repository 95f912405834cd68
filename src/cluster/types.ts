/**
 * The cluster map: what every coordinator and replicator needs to know. Two implementations share one test
 * suite: `zookeeper.ts` (production, the original's znode layout) and `embedded.ts` (a file under the data dir).
 */
import type { RuntimeSettings, SettingsPatch } from "./settings.js";

/**
 * A storage node. Stored in `/servers-map` as `{"host","port"}` (port a string), as the original did; an
 * `https` server also carries `"scheme":"https"` (an extra field the original's readers ignore).
 */
export interface ServerInfo {
  id: string;
  /** Base URL, e.g. `http://one:10001` (no trailing slash). */
  url: string;
}

export interface ShardInfo {
  id: string;
  /** Server ids holding replicas, in the order the operator gave them. */
  servers: string[];
  /** False while the shard is read-only (new shards start read-only). */
  enabled: boolean;
  /** Bytes the shard may hold. */
  capacity: number;
  /** Bytes stored (counted by coordinators, once per successful upload). Never null, NaN or negative. */
  used: number;
}

export interface QueueEndpoint {
  host: string;
  port: number;
}

export interface QueueSettings {
  /** Key prefix of the replication queue in Redis (the original's `backpack-queue`). */
  key: string;
  servers: QueueEndpoint[];
}

export type S3Permission = "read" | "write" | "owner";

/** An S3 access key (`backpack admin s3-key`): its secret signs requests, so it is kept, not hashed. */
export interface S3AccessKey {
  id: string;
  secret: string;
  name: string;
  /** ISO time. */
  created: string;
  /** Bucket name (or `*`, every bucket) → permission. */
  grants: Readonly<Record<string, S3Permission>>;
}

/** An S3 bucket: its objects are placed on `shards`, the shards writable when it was created (docs/s3.md). */
export interface S3Bucket {
  name: string;
  /** ISO time. */
  created: string;
  /** The access key that created it. */
  owner: string;
  shards: readonly string[];
}

/** The S3 front's part of the map (document `s3`). */
export interface S3Config {
  keys: Readonly<Record<string, S3AccessKey>>;
  buckets: Readonly<Record<string, S3Bucket>>;
}

/** An edit of the S3 document: `next` is written unless it is the same object as `current`. */
export type S3Edit<R> = (current: S3Config, snapshot: ClusterSnapshot) => { next: S3Config; result: R };

/** An immutable view of the map at one moment. */
export interface ClusterSnapshot {
  /** Runtime settings (log level, client limits, blocklist), version 0 before the first change. */
  settings: RuntimeSettings;
  /** False when the root path was never initialised (`backpack-coordinator-init` not run). */
  initialized: boolean;
  servers: Readonly<Record<string, ServerInfo>>;
  shards: Readonly<Record<string, ShardInfo>>;
  queue: QueueSettings | undefined;
  /** S3 access keys and buckets (empty until the first is made). Holds secrets: never answer it whole. */
  s3: S3Config;
}

export type InitPart = "servers" | "shards" | "queue";

export interface InitResult {
  /** For each part: created now, or already there (and left unchanged). */
  created: Record<InitPart, boolean>;
}

export interface AddShardResult {
  created: boolean;
  /** Set when the shard existed with the same servers and another capacity, which was replaced. */
  previousCapacity?: number;
}

export interface ClusterMap {
  /** Where the map lives, for messages: `zk://a:2181,b:2181/backpack` or `file:/path/cluster.json`. */
  readonly description: string;
  /** Connects and loads the map; resolves once a first snapshot is available. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The local copy, kept current by watches. Never blocks, also while the backing store is away. */
  snapshot(): ClusterSnapshot;
  /** Called after every change of the local copy. Returns an unsubscribe function. */
  onChange(listener: (snapshot: ClusterSnapshot) => void): () => void;
  /** True while the backing store is reachable. */
  readonly connected: boolean;

  /**
   * Creates what is missing of servers map, shards map and queue; never overwrites. Every other change is
   * refused with NOT_INITIALIZED until the servers map and the shards map exist.
   */
  init(queue: QueueSettings): Promise<InitResult>;
  /** Adds a server, or updates the URL of an existing one. */
  addServer(id: string, url: string): Promise<void>;
  /**
   * Adds a read-only shard. Refused (CONFLICT) when the id exists with other servers (the message shows the
   * existing shard), when a server is unknown, listed twice or already in another shard. Re-adding the exact
   * same shard is a no-op; re-adding it with another capacity changes the capacity (`previousCapacity` says
   * from what), as the original's add-shard did.
   */
  addShard(id: string, servers: string[], capacity: number): Promise<AddShardResult>;
  /** Changes a shard's servers; refuses to drop a server from a shard that holds data unless `force`. */
  setShardServers(id: string, servers: string[], options?: { force?: boolean }): Promise<void>;
  /** Enables (writable) or disables (read-only) a shard; enabling needs every server registered. */
  setShardEnabled(id: string, enabled: boolean): Promise<void>;
  setQueue(queue: QueueSettings): Promise<void>;
  /** Changes the runtime settings (one version up); resolves with the new settings. */
  setSettings(patch: SettingsPatch): Promise<RuntimeSettings>;
  /**
   * Adds byte counts to shards' usage with compare-and-set (no lost update between coordinators). Deltas may
   * be negative (deletes); usage is clamped at 0.
   */
  addUsage(deltas: Readonly<Record<string, number>>): Promise<void>;
  /**
   * Changes the S3 document with compare-and-set: `edit` may run more than once (on a conflict it is called
   * again with what the other writer wrote); what it throws is thrown here, and nothing is written then.
   */
  updateS3<R>(edit: S3Edit<R>): Promise<R>;
}
