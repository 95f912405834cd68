/**
 * The store as the S3 front sees it: buckets from the cluster map, files by native name on the shard the
 * name's rendezvous order gives (docs/s3.md, "Placement"), all through the coordinator's native API.
 */
import type { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import type { ClusterMap, S3Bucket } from "../cluster/types.js";
import type { CoordinatorClient, ListEntry, ListPage } from "../client/coordinator-client.js";
import { hasCode } from "../common/errors.js";
import { S3Error } from "./errors.js";
import { homeShard, rankShards } from "./placement.js";

/** Codes of a targeted PUT that send it on to the name's next shard (a 404 to a PUT: no such shard). */
const FALL_BACK_ON = ["SHARD_UNAVAILABLE", "NO_SUCH_SHARD", "NOT_FOUND"] as const;

/** How long this front trusts its own bucket changes over a map copy that may not have caught up yet, ms. */
const RECENT_MS = 30_000;

export interface StoredPut {
  name: string;
  size: number;
  /** The body; called again for each shard tried (a fallback needs a fresh stream). */
  body: () => Buffer | Readable;
  headers: Record<string, string>;
  /** CRC-32 of the body, 8 hex digits. */
  checksum?: string;
}

export class ObjectStore {
  /** Buckets this front created or deleted lately: the map's watch may bring the change a moment later. */
  private readonly recent = new Map<string, { bucket: S3Bucket | undefined; at: number }>();

  constructor(
    private readonly client: CoordinatorClient,
    private readonly coordinator: () => string,
    private readonly map: ClusterMap,
    private readonly now: () => number = Date.now,
  ) {}

  /** The bucket, or NoSuchBucket. */
  bucket(name: string): S3Bucket {
    const b = this.findBucket(name);
    if (b === undefined) throw new S3Error("NoSuchBucket", "The specified bucket does not exist");
    return b;
  }

  findBucket(name: string): S3Bucket | undefined {
    const recent = this.recent.get(name);
    if (recent !== undefined) {
      if (this.now() - recent.at < RECENT_MS) return recent.bucket;
      this.recent.delete(name);
    }
    const buckets = this.map.snapshot().s3.buckets;
    return Object.hasOwn(buckets, name) ? buckets[name] : undefined;
  }

  noteBucket(name: string, bucket: S3Bucket | undefined): void {
    this.recent.set(name, { bucket, at: this.now() });
  }

  /** Stores a file on its home shard, or the next one that takes writes; resolves with the shard. */
  async put(bucket: S3Bucket, file: StoredPut): Promise<string> {
    let last: unknown;
    for (const shard of rankShards(file.name, bucket.shards)) {
      try {
        const headers =
          file.checksum === undefined
            ? file.headers
            : { ...file.headers, "x-backpack-checksum": file.checksum };
        const put = await this.client.put(this.coordinator(), file.name, file.body(), {
          shard,
          size: file.size,
          headers,
        });
        return put.shardId;
      } catch (err) {
        if (!FALL_BACK_ON.some((code) => hasCode(err, code))) throw err;
        last = err;
      }
    }
    throw new S3Error("ServiceUnavailable", "no shard of this bucket takes writes now", { cause: last });
  }

  /**
   * Reads a file: from its home shard (one node request), or, when the home shard does not have it, from the
   * shard the listing names (a write that fell back). Undefined when no shard has it. Statuses other than
   * 404 are returned as they are (200, 206, 304, 412, 416; errors too).
   */
  async open(
    bucket: S3Bucket,
    name: string,
    options: { method?: "GET" | "HEAD"; headers?: Record<string, string> } = {},
  ): Promise<{ res: Dispatcher.ResponseData; shard: string } | undefined> {
    const home = homeShard(name, bucket.shards);
    if (home !== undefined) {
      const res = await this.client.get(this.coordinator(), home, name, options);
      if (res.statusCode !== 404) return { res, shard: home };
      await res.body.dump();
    }
    const found = await this.locate(name);
    if (found === undefined || found.shard === home) return undefined;
    const res = await this.client.get(this.coordinator(), found.shard, name, options);
    if (res.statusCode === 404) {
      await res.body.dump();
      return undefined;
    }
    return { res, shard: found.shard };
  }

  /** Reads a file from a known shard (a part named in a manifest). */
  async read(
    shard: string,
    name: string,
    headers: Record<string, string> = {},
    method: "GET" | "HEAD" = "GET",
  ): Promise<Dispatcher.ResponseData> {
    return this.client.get(this.coordinator(), shard, name, { headers, method });
  }

  /** The newest live version of exactly this name in the listing, wherever it is. */
  async locate(name: string): Promise<ListEntry | undefined> {
    const page = await this.client.list(this.coordinator(), { prefix: name, limit: 1 });
    const first = page.entries[0];
    return first?.key === name ? first : undefined;
  }

  /** Deletes a file from its home shard and from the shard the listing names; true when one held it. */
  async delete(bucket: S3Bucket, name: string): Promise<boolean> {
    const found = await this.locate(name);
    const shards = new Set<string>();
    const home = homeShard(name, bucket.shards);
    if (home !== undefined) shards.add(home);
    if (found !== undefined) shards.add(found.shard);
    const done = await Promise.all([...shards].map((s) => this.deleteOn(s, name)));
    return done.includes(true);
  }

  /** Deletes a file from a known shard (a part). */
  async deleteOn(shard: string, name: string): Promise<boolean> {
    return this.client.delete(this.coordinator(), shard, name);
  }

  async list(prefix: string, after: string | undefined, limit: number): Promise<ListPage> {
    return this.client.list(this.coordinator(), { prefix, after, limit });
  }

  /** Every file under a prefix (bounded: `max`), page by page. */
  async listAll(prefix: string, max: number): Promise<ListEntry[]> {
    const out: ListEntry[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.list(prefix, after, 1000);
      out.push(...page.entries);
      const last = page.entries.at(-1);
      if (!page.truncated || last === undefined || out.length >= max) return out.slice(0, max);
      after = last.key;
    }
  }
}
