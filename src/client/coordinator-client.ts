import { Readable } from "node:stream";
import { request, type Dispatcher } from "undici";
import { BackpackError } from "../common/errors.js";
import { keyToPath } from "../common/key.js";
import type { StoredHeaders } from "../common/stored-headers.js";
import { VERSION_HEADER } from "../common/version.js";
import { expectStatus, headerText, objectOf, upstreamError, type NodeObject } from "./node-answers.js";
import type { ShardHealth } from "../queue/health.js";
import type { ServiceRingView } from "../ring/service-ring.js";
import type { RuntimeSettings } from "../cluster/settings.js";

/** The coordinator's `GET /stats`: the original's fields first (same names and meaning), then ours. Bytes. */
export type { ShardHealth };

export interface CoordinatorStats {
  /** Seconds since start. */
  uptime: number;
  processed_uploads: number;
  processed_bytes: number;
  failed_uploads: number;
  total_size: number;
  used_size: number;
  usage_ratio: number;
  available_space: number;
  total_shards: number;
  writable_shards: number;
  /** Replication tasks waiting or in progress; null while the queue cannot be asked. */
  queue_length: number | null;
  /** Of the failed uploads, those whose client went away mid-upload. */
  aborted_uploads: number;
  throttled_uploads: number;
  /** Uploads being received now, and the bytes of their bodies the coordinator holds in memory. */
  uploads_in_flight: number;
  buffered_upload_bytes: number;
  /** Age of the oldest unfinished replication task, ms (the replication lag); null as above. */
  replication_lag_ms: number | null;
  /** Of the queued tasks, those waiting for a node that is down or full; null as above. */
  queue_unreachable: number | null;
  cluster_map_connected: boolean;
  /** Servers the coordinator saw failing recently (tried last). */
  suspect_servers: string[];
  /** Replication tasks given up on (see `backpack queue dead-letters`); null as `queue_length`. */
  dead_letters: number | null;
  /** GETs answered with a file, and their bytes. */
  processed_reads: number;
  read_bytes: number;
  /**
   * Files with fewer verified copies than their shard has servers, over every shard the replicators reported
   * on; null while the queue cannot be asked or before any report.
   */
  under_replicated_files: number | null;
  /** Per shard, the repair health the replicators last reported (docs/operations.md, "Health"). */
  repair: ShardHealth[];
  /** The runtime settings this coordinator applied, and when (ms since the epoch). */
  settings: RuntimeSettings & { appliedAt: number };
}

/** One sample of the coordinator's figures in `GET /status` (`history`), every 2 s. */
export interface StatusSample {
  /** ms since the epoch. */
  t: number;
  uploads: number;
  failed: number;
  aborted: number;
  bytesIn: number;
  reads: number;
  bytesOut: number;
  /** Null while the queue cannot be asked. */
  queue: number | null;
  lagMs: number | null;
  deadLetters: number | null;
  underReplicated: number | null;
  /** Repairs done (copied + deleted + restored), over every shard. */
  repairs: number;
}

/** `GET /status`: everything `backpack status --json` and the dashboard show, in one answer. */
export interface StatusDocument {
  coordinator: string;
  /** When it was made, ms since the epoch. */
  at: number;
  stats: CoordinatorStats;
  cluster: ClusterView;
  /** The last 10 minutes, oldest first. */
  history: StatusSample[];
  /** The coordinator's ring membership as `GET /ring` answers it; null when its ring is off (`--no-ring`). */
  ring: ServiceRingView | null;
}

/** One server of a file's shard in `GET /locate/<shard>:<key>`. */
export interface NodeHolding {
  server: string;
  url: string;
  /** `holds` the file's (newest) version; `older`; `missing`; `damaged` (quarantined); `unreachable` (see `reason`). */
  holds: "holds" | "older" | "missing" | "damaged" | "unreachable";
  version?: string;
  reason?: string;
  /** Replication tasks for the file to this server: `leased` is being made now; `waiting` is held back (retry, server down). */
  queued: {
    op: "copy" | "delete";
    version: string | null;
    state: "leased" | "due" | "waiting";
    attempts: number;
    dueAt?: number;
  }[];
  /** The shard's comparison under way is copying files to this server. */
  repair: boolean;
}

/** `GET /locate/<shard>:<key>`: the file, and what each server of its shard holds of it now. */
export interface FileLocation {
  address: string;
  size: number;
  checksum: string;
  contentType: string;
  lastModified: string;
  version: string | null;
  /** False when the queue could not be asked (`queued` is then empty for want of an answer). */
  queueAnswered: boolean;
  nodes: NodeHolding[];
}

/** The coordinator's `GET /cluster`: the cluster map as it sees it, and which servers it saw failing. */
export interface ClusterView {
  servers: { id: string; url: string; suspect: boolean }[];
  shards: { id: string; servers: string[]; enabled: boolean; capacity: number; used: number }[];
  /** The cluster map's runtime settings (absent from coordinators that predate them). */
  settings?: RuntimeSettings;
}

/** Where the coordinator lists the cluster's files in key order. */
export const LIST_PATH = "/_list";
/** Names the shard a targeted upload goes to. */
export const SHARD_HEADER = "x-backpack-shard";

/** One file of `GET /_list`. */
export interface ListEntry {
  key: string;
  shard: string;
  size: number;
  /** As `X-Backpack-Version`. */
  version: string;
  /** An HTTP date. */
  lastModified: string;
  contentType: string;
  /** The file's stored headers (names lower-case); absent when it has none. */
  headers?: StoredHeaders;
}

/** A page of `GET /_list`: `truncated` when keys after the last entry may follow. */
export interface ListPage {
  entries: ListEntry[];
  truncated: boolean;
}

export interface CoordinatorPutOptions {
  /** Declared length; without it the body goes chunked (the coordinator then reads it whole first). */
  size?: number;
  contentType?: string;
  /** Stored with the file and answered back on GET/HEAD (Cache-Control, Content-*, Expires, X-Backpack-Meta-*). */
  headers?: StoredHeaders;
  /** Store it on this shard (`X-Backpack-Shard`) instead of one the coordinator chooses. */
  shard?: string;
  /** `all`: answer only once every server of the shard holds the file. */
  replicas?: "all";
  token?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * HTTP client to a coordinator (see docs/http-api.md, "Coordinator"): `PUT /<key>` → `{"shard_id"}`,
 * `GET`/`HEAD`/`DELETE /<shard>:<key>`, `GET /stats`. Errors are BackpackErrors carrying the coordinator's code.
 */
export class CoordinatorClient {
  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly defaults: { token?: string; timeoutMs?: number } = {},
  ) {}

  /** Uploads a body; resolves with the shard it went to (and, with `replicas: "all"`, the servers holding it). */
  async put(
    base: string,
    key: string,
    body: Buffer | string | AsyncIterable<Uint8Array>,
    options: CoordinatorPutOptions = {},
  ): Promise<{ shardId: string; version: string; replicas?: string[] }> {
    const headers: Record<string, string> = { ...options.headers, ...this.authHeaders(options.token) };
    if (options.size !== undefined) headers["content-length"] = String(options.size);
    if (options.contentType) headers["content-type"] = options.contentType;
    if (options.shard !== undefined) headers[SHARD_HEADER] = options.shard;
    if (options.replicas === "all") headers["x-backpack-replicas"] = "all";
    const payload = typeof body === "string" || Buffer.isBuffer(body) ? body : Readable.from(body);
    const res = await this.send(base, keyToPath(key), "PUT", { ...options, headers, body: payload });
    await expectStatus(res, [200], base, key);
    const json = (await res.body.json()) as { shard_id?: unknown; replicas?: unknown };
    if (typeof json.shard_id !== "string") {
      throw new BackpackError("UPSTREAM_FAILED", `${base} answered PUT without a shard id`);
    }
    const version = headerText(res.headers[VERSION_HEADER]);
    return Array.isArray(json.replicas)
      ? { shardId: json.shard_id, version, replicas: json.replicas.map(String) }
      : { shardId: json.shard_id, version };
  }

  /**
   * One page of the cluster's files in key order (`GET /_list`): the newest live version of each key that
   * starts with `prefix`, strictly after `after`, at most `limit` (1-1000, default 1000).
   */
  async list(
    base: string,
    options: {
      prefix?: string;
      after?: string;
      limit?: number;
      timeoutMs?: number;
      signal?: AbortSignal;
    } = {},
  ): Promise<ListPage> {
    const q = new URLSearchParams();
    if (options.prefix) q.set("prefix", options.prefix);
    if (options.after !== undefined) q.set("after", options.after);
    if (options.limit !== undefined) q.set("limit", String(options.limit));
    const res = await this.send(base, `${LIST_PATH}?${q.toString()}`, "GET", options);
    await expectStatus(res, [200], base, LIST_PATH);
    return (await res.body.json()) as ListPage;
  }

  /** GET (or HEAD) `/<shard>:<key>`: any status is returned; the caller consumes or dumps the body. */
  async get(
    base: string,
    shardId: string,
    key: string,
    options: {
      method?: "GET" | "HEAD";
      headers?: Record<string, string>;
      timeoutMs?: number;
      signal?: AbortSignal;
    } = {},
  ): Promise<Dispatcher.ResponseData> {
    return this.send(base, shardPath(shardId, key), options.method ?? "GET", options);
  }

  /** The object's metadata, or undefined when no server of the shard has it. */
  async head(base: string, shardId: string, key: string): Promise<NodeObject | undefined> {
    const res = await this.send(base, shardPath(shardId, key), "HEAD", {});
    if (res.statusCode === 404) {
      await res.body.dump();
      return undefined;
    }
    await expectStatus(res, [200], base, key);
    await res.body.dump();
    return objectOf(res.headers);
  }

  /** True when deleted (or queued for deletion on servers that are down), false when absent. */
  async delete(
    base: string,
    shardId: string,
    key: string,
    options: { token?: string } = {},
  ): Promise<boolean> {
    const res = await this.send(base, shardPath(shardId, key), "DELETE", {
      headers: this.authHeaders(options.token),
    });
    if (res.statusCode === 404) {
      await res.body.dump();
      return false;
    }
    await expectStatus(res, [204], base, key);
    await res.body.dump();
    return true;
  }

  async stats(base: string): Promise<CoordinatorStats> {
    const res = await this.send(base, "/stats", "GET", {});
    await expectStatus(res, [200], base, "/stats");
    return (await res.body.json()) as CoordinatorStats;
  }

  /** Where a file is (`GET /locate/<shard>:<key>`); undefined when no server holds it. */
  async locate(base: string, shardId: string, key: string): Promise<FileLocation | undefined> {
    const res = await this.send(base, `/locate${keyToPath(`${shardId}:${key}`)}`, "GET", {});
    if (res.statusCode === 404) {
      await res.body.dump();
      return undefined;
    }
    await expectStatus(res, [200], base, "/locate");
    return (await res.body.json()) as FileLocation;
  }

  async status(base: string): Promise<StatusDocument> {
    const res = await this.send(base, "/status", "GET", {});
    await expectStatus(res, [200], base, "/status");
    return (await res.body.json()) as StatusDocument;
  }

  async cluster(base: string): Promise<ClusterView> {
    const res = await this.send(base, "/cluster", "GET", {});
    await expectStatus(res, [200], base, "/cluster");
    return (await res.body.json()) as ClusterView;
  }

  private authHeaders(token: string | undefined): Record<string, string> {
    const t = token ?? this.defaults.token;
    return t ? { authorization: `Bearer ${t}` } : {};
  }

  private async send(
    base: string,
    path: string,
    method: Dispatcher.HttpMethod,
    options: {
      headers?: Record<string, string>;
      body?: string | Buffer | Readable;
      timeoutMs?: number;
      signal?: AbortSignal;
    },
  ): Promise<Dispatcher.ResponseData> {
    const timeoutMs = options.timeoutMs ?? this.defaults.timeoutMs ?? 30_000;
    try {
      return await request(base + path, {
        method,
        dispatcher: this.dispatcher,
        headers: options.headers,
        body: options.body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: options.signal,
      });
    } catch (err) {
      throw upstreamError(err, method, base);
    }
  }
}

/** `/<shard>:<key>` with the key percent-encoded as on a node. */
export function shardPath(shardId: string, key: string): string {
  return `/${encodeURIComponent(shardId)}:${keyToPath(key).slice(1)}`;
}
