import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { request, type Dispatcher } from "undici";
import { BackpackError, hasCode, toBackpackError } from "../common/errors.js";
import { keyToPath, validateKey } from "../common/key.js";
import { formatChecksum, parseChecksum } from "../common/checksum.js";
import { formatVersion, parseVersion, VERSION_HEADER, type Version } from "../common/version.js";
import type { StoredHeaders } from "../common/stored-headers.js";
import {
  answerError,
  expectStatus,
  headerText,
  objectOf,
  putOutcome,
  sameOrNewer,
  staleCurrent,
  staleError,
  upstreamError,
  type NodeObject,
} from "./node-answers.js";
import type { ListedEntry } from "../storage/types.js";
import type { ScrubStats } from "../storage/scrubber.js";
import { BATCH_CONTENT_TYPE, BATCH_PATH } from "../common/batch-frame.js";
import { checksum } from "../common/checksum.js";
import { isUnsupported, type LeanClient, type LeanReply } from "./lean-client.js";
import { WriteBatcher, type BatchAnswer } from "./write-batcher.js";

/** Bodies in memory up to this size are sent in batches (when batching is on); larger ones on their own. */
const BATCH_BODY_MAX_BYTES = 64 * 1024;
/** A node refusing a write as overloaded is asked again after this long, doubling up to the max (with jitter). */
const OVERLOADED_FIRST_WAIT_MS = 50;
const OVERLOADED_MAX_WAIT_MS = 1000;
/** Marks the error of a node that answered a batch 404 or 405. */
const NO_BATCHES = "noBatches";

/** One key as a replica holds it (`GET /_backpack/list`). */
export type ReplicaEntry = ListedEntry;

/** Where a node lists its keys in key order. */
export const KEYS_PATH = "/_backpack/keys";

/** One key of `GET /_backpack/keys`, as the node sends it (docs/http-api.md). */
export interface NodeKeyEntry {
  key: string;
  /** As `X-Backpack-Version`. */
  version: string;
  size: number;
  /** A delete within its grace period. */
  deleted?: true;
  /** Quarantined (failed its checksum), waiting for repair. */
  damaged?: true;
  contentType?: string;
  headers?: StoredHeaders;
}

/** The path of a page of a node's keys (`GET /_backpack/keys`), or of its summary. */
function keysPath(options: { prefix?: string; after?: string; limit?: number }, summary: boolean): string {
  const q = new URLSearchParams({ limit: String(options.limit ?? 1000) });
  if (options.prefix) q.set("prefix", options.prefix);
  if (options.after !== undefined) q.set("after", options.after);
  if (summary) q.set("summary", "1");
  return `${KEYS_PATH}?${q.toString()}`;
}

/** A page of a node's keys as its summary (`GET /_backpack/keys?summary=1`). */
export interface KeyPageSummary {
  more: boolean;
  count: number;
  /** The page's last key; undefined for an empty page. */
  last: string | undefined;
  /** pageSummary() of the page's entries. */
  summary: string;
}

/** A node's replica digest and the health figures that come with it (`GET /_backpack/digest`). */
export interface ReplicaDigest {
  /** Index entries: files and tombstones. */
  entries: number;
  /** Files. */
  objects: number;
  /** Damaged records found since the node started (quarantined at start, or by a read or the scrub). */
  checksumErrors: number;
  scrub: ScrubStats;
  /** Two u32 per bucket. */
  hashes: Uint32Array;
}

export type PutOptions = NodeRequestOptions & {
  size?: number;
  contentType?: string;
  /** Stored with the file (Cache-Control, Content-*, Expires, X-Backpack-Meta-*). */
  headers?: StoredHeaders;
  expectedCrc?: number;
  version?: Version;
};

export interface NodeRequestOptions {
  token?: string;
  /** Whole-request timeout for small requests; for streams, the time allowed between bytes. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * HTTP client to a storage node. The wire contract (see docs/http-api.md):
 * - `PUT /<key>` → 201 with `ETag` and `X-Backpack-Checksum` (CRC-32 of the body, 8 hex digits). A request
 *   `X-Backpack-Checksum` makes the node refuse (502 CHECKSUM_MISMATCH) a body that does not match it.
 * - `GET`/`HEAD /<key>` → 200 with `Content-Length`, `Content-Type`, `ETag`, `Last-Modified`,
 *   `X-Backpack-Checksum`; 404 when absent; 502 CHECKSUM_MISMATCH when the stored record is corrupt.
 * - `DELETE /<key>` → 204, or 404 when absent.
 * - Writes and deletes may carry `X-Backpack-Version`; a node holding that version or a newer one answers 409
 *   STALE_VERSION with the version it holds in `X-Backpack-Version` (also on 201, 200 and 204 answers).
 */
export class NodeClient {
  /** Small writes to one node made in one turn go in one request (see write-batcher.ts), when on. */
  private readonly batcher: WriteBatcher | undefined;
  /** Nodes that answered a batch 404 or 405 (they predate batches): their writes go one by one. */
  private readonly noBatch = new Set<string>();

  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly defaults: { token?: string; timeoutMs?: number; batch?: boolean } = {},
    /** The lean client: reads, uploads and batches go through it (undici carries what it cannot). */
    private readonly lean?: LeanClient,
  ) {
    this.batcher = defaults.batch
      ? new WriteBatcher((base, token, frame) => this.sendBatch(base, token, frame), {
          // One frame in flight per node: the writes asked for meanwhile go in the next frame, which grows with
          // the load; each frame costs the node one fsync, measured at ~190 µs of CPU on the 2-core machine.
          maxInflight: 1,
          maxFrameBytes: 4 * 1024 * 1024,
        })
      : undefined;
  }

  /**
   * Streams a body to `<base>/<key>`; resolves with the stored checksum and version once the node has it
   * durably. With a `version`, a node holding that version or a newer one refuses: STALE_VERSION with
   * `details.current` (the version it holds, as text).
   */
  async put(
    base: string,
    key: string,
    body: Buffer | AsyncIterable<Uint8Array>,
    options: PutOptions = {},
  ): Promise<{ crc: number; version: Version | undefined }> {
    const timeoutMs = options.timeoutMs ?? this.defaults.timeoutMs ?? 10_000;
    const deadline = Date.now() + timeoutMs;
    for (let waitMs = OVERLOADED_FIRST_WAIT_MS; ; waitMs = Math.min(2 * waitMs, OVERLOADED_MAX_WAIT_MS)) {
      try {
        return await this.putOnce(base, key, body, options, timeoutMs);
      } catch (err) {
        // A node that refused for lack of room before taking a byte (too many uploads in flight) is asked
        // again a little later, within the request's time: the body is whole still (in memory, or a stream
        // that waited for its 100 Continue).
        const whole = Buffer.isBuffer(body) || toBackpackError(err).details?.bodyTaken === false;
        if (!hasCode(err, "OVERLOADED") || !whole || options.signal?.aborted) throw err;
        const wait = waitMs * (0.5 + Math.random() / 2);
        if (Date.now() + wait > deadline) throw err;
        await sleep(wait, undefined, options.signal ? { signal: options.signal } : {}).catch(() => {
          throw err;
        });
      }
    }
  }

  private async putOnce(
    base: string,
    key: string,
    body: Buffer | AsyncIterable<Uint8Array>,
    options: PutOptions,
    timeoutMs: number,
  ): Promise<{ crc: number; version: Version | undefined }> {
    if (
      this.batcher &&
      Buffer.isBuffer(body) &&
      body.length <= BATCH_BODY_MAX_BYTES &&
      !this.noBatch.has(base)
    ) {
      validateKey(key);
      try {
        return await this.batcher.put(
          base,
          options.token ?? this.defaults.token,
          {
            key,
            contentType: options.contentType,
            headers: options.headers,
            body,
            bodyCrc: options.expectedCrc ?? checksum(body),
            version: options.version,
          },
          options.signal,
        );
      } catch (err) {
        // A node that predates batches: this write again on its own, and the node's next ones too.
        if (!(err instanceof BackpackError && err.details?.[NO_BATCHES] === true)) throw err;
        this.noBatch.add(base);
      }
    }
    const headers: Record<string, string> = { ...options.headers, ...this.authHeaders(options) };
    if (options.contentType) headers["content-type"] = options.contentType;
    if (options.expectedCrc !== undefined)
      headers["x-backpack-checksum"] = formatChecksum(options.expectedCrc);
    if (options.version) headers[VERSION_HEADER] = formatVersion(options.version);
    const size = Buffer.isBuffer(body) ? body.length : options.size;
    if (this.lean?.handles(base) && size !== undefined) {
      // The lean client: a body in memory goes with the head in one write; a stream at the node's pace, once
      // the node admitted it (100 Continue), so that a refusal leaves it whole.
      validateKey(key);
      const streamed = !Buffer.isBuffer(body);
      const reply = await this.lean.request({
        method: "PUT",
        origin: base,
        path: keyToPath(key),
        headers,
        body: Buffer.isBuffer(body) ? body : { length: size, chunks: body },
        expectContinue: streamed,
        timeoutMs,
        bufferBytes: 64 * 1024,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      try {
        return putOutcome(reply.status, (name) => reply.headers[name] ?? "", reply.body, base, key);
      } catch (err) {
        // Whether the body can be sent again (for a refusal before it: an overloaded node).
        const e = toBackpackError(err);
        throw new BackpackError(e.code, e.message, { details: { ...e.details, bodyTaken: reply.bodyTaken } });
      }
    }
    if (size !== undefined) headers["content-length"] = String(size);
    const res = await this.send(base, key, "PUT", { ...options, headers, body });
    const text = await res.body.text().catch(() => "");
    return putOutcome(res.statusCode, (name) => headerText(res.headers[name]), text, base, key);
  }

  /**
   * A replication copy of one version: `"stored"`, `"same"` when the node already holds that version, or
   * `"newer"` when it holds a newer one (a later write or delete: the copy is not needed).
   */
  async copy(
    base: string,
    key: string,
    body: Buffer | AsyncIterable<Uint8Array>,
    options: NodeRequestOptions & {
      size: number;
      contentType?: string;
      headers?: StoredHeaders;
      expectedCrc: number;
      version: Version;
    },
  ): Promise<"stored" | "same" | "newer"> {
    try {
      await this.put(base, key, body, options);
      return "stored";
    } catch (err) {
      return sameOrNewer(err, options.version);
    }
  }

  /**
   * A versioned delete: the node records a tombstone of `version` whether or not it holds the file.
   * `"deleted"` (with the removed size) or `"absent"` when it held no file, `"same"` / `"newer"` (with the
   * version it holds) when it already holds that version or a newer one.
   */
  async deleteVersion(
    base: string,
    key: string,
    options: NodeRequestOptions & { version: Version },
  ): Promise<
    | { state: "deleted"; size: number | undefined }
    | { state: "absent" | "same" }
    | { state: "newer"; current: Version | undefined }
  > {
    const headers = { ...this.authHeaders(options), [VERSION_HEADER]: formatVersion(options.version) };
    const res = await this.send(base, key, "DELETE", { ...options, headers });
    if (res.statusCode === 409) {
      await res.body.dump();
      const stale = staleError(headerText(res.headers[VERSION_HEADER]), base, key);
      const state = sameOrNewer(stale, options.version);
      return state === "same" ? { state } : { state, current: staleCurrent(stale) };
    }
    await expectStatus(res, [204, 404], base, key);
    await res.body.dump();
    if (res.statusCode === 404) return { state: "absent" };
    const size = Number(headerText(res.headers["x-backpack-size"]));
    return { state: "deleted", size: Number.isSafeInteger(size) ? size : undefined };
  }

  /** The node's replica digest (`GET /_backpack/digest`): two u32 per bucket. */
  async digest(base: string, options: NodeRequestOptions = {}): Promise<ReplicaDigest> {
    const res = await this.sendPath(base, "/_backpack/digest", options);
    await expectStatus(res, [200], base, "/_backpack/digest");
    const doc = (await res.body.json()) as Omit<ReplicaDigest, "hashes"> & {
      buckets: number;
      digest: string;
    };
    const bytes = Buffer.from(doc.digest, "hex");
    const hashes = new Uint32Array(doc.buckets * 2);
    for (let i = 0; i < hashes.length; i++) hashes[i] = bytes.readUInt32BE(4 * i);
    return {
      entries: doc.entries,
      objects: doc.objects,
      checksumErrors: doc.checksumErrors,
      scrub: doc.scrub,
      hashes,
    };
  }

  /** One page of a digest bucket's entries in key order (`GET /_backpack/list`). */
  async listBucket(
    base: string,
    bucket: number,
    options: NodeRequestOptions & { after?: string; limit?: number } = {},
  ): Promise<{ entries: ReplicaEntry[]; more: boolean }> {
    const q = new URLSearchParams({ bucket: String(bucket), limit: String(options.limit ?? 1000) });
    if (options.after !== undefined) q.set("after", options.after);
    const res = await this.sendPath(base, `/_backpack/list?${q.toString()}`, options);
    await expectStatus(res, [200], base, "/_backpack/list");
    const doc = (await res.body.json()) as {
      more: boolean;
      entries: {
        key: string;
        version: string;
        crc: string;
        size: number;
        deleted?: boolean;
        damaged?: boolean;
      }[];
    };
    const entries: ReplicaEntry[] = [];
    for (const e of doc.entries) {
      const version = parseVersion(e.version);
      const crc = parseChecksum(e.crc);
      if (version === undefined || crc === undefined) continue;
      entries.push({
        key: e.key,
        version,
        crc,
        size: e.size,
        deleted: e.deleted === true,
        damaged: e.damaged === true,
      });
    }
    return { entries, more: doc.more };
  }

  /**
   * One page of the node's keys in key order (`GET /_backpack/keys`): files and deletes within their grace
   * period, starting with `prefix`, strictly after `after`.
   */
  async listKeys(
    base: string,
    options: NodeRequestOptions & { prefix?: string; after?: string; limit?: number } = {},
  ): Promise<{ entries: NodeKeyEntry[]; more: boolean }> {
    const res = await this.sendPath(base, keysPath(options, false), options);
    await expectStatus(res, [200], base, KEYS_PATH);
    const doc = (await res.body.json()) as { more: boolean; entries: NodeKeyEntry[] };
    return { entries: doc.entries, more: doc.more };
  }

  /**
   * The summary of the page `listKeys` would answer with the same options (`GET /_backpack/keys?summary=1`):
   * its entry count, last key, `more`, and the hash of its keys, versions and deletes (common/page-summary.ts).
   */
  async listKeysSummary(
    base: string,
    options: NodeRequestOptions & { prefix?: string; after?: string; limit?: number } = {},
  ): Promise<KeyPageSummary> {
    const res = await this.sendPath(base, keysPath(options, true), options);
    await expectStatus(res, [200], base, KEYS_PATH);
    const doc = (await res.body.json()) as {
      more: boolean;
      count: number;
      last: string | null;
      summary: string;
    };
    return { more: doc.more, count: doc.count, last: doc.last ?? undefined, summary: doc.summary };
  }

  private async sendPath(
    base: string,
    path: string,
    options: NodeRequestOptions,
  ): Promise<Dispatcher.ResponseData> {
    const timeoutMs = options.timeoutMs ?? this.defaults.timeoutMs ?? 10_000;
    try {
      return await request(base + path, {
        method: "GET",
        dispatcher: this.dispatcher,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: options.signal,
      });
    } catch (err) {
      throw upstreamError(err, "GET", base);
    }
  }

  /** Whether the node answers `GET /healthz` with 200: false when it cannot be reached or is stopping. */
  async healthy(base: string, options: NodeRequestOptions = {}): Promise<boolean> {
    try {
      const res = await this.sendPath(base, "/healthz", options);
      await res.body.dump();
      return res.statusCode === 200;
    } catch {
      return false;
    }
  }

  /** HEAD: the object's metadata, or undefined when the node does not have it. */
  async head(base: string, key: string, options: NodeRequestOptions = {}): Promise<NodeObject | undefined> {
    const res = await this.send(base, key, "HEAD", options);
    if (res.statusCode === 404) {
      await res.body.dump();
      return undefined;
    }
    await expectStatus(res, [200], base, key);
    return objectOf(res.headers);
  }

  /** GET: status, headers and the body stream (the caller consumes or dumps it). Any status is returned. */
  async get(
    base: string,
    key: string,
    options: NodeRequestOptions & { headers?: Record<string, string>; method?: "GET" | "HEAD" } = {},
  ): Promise<Dispatcher.ResponseData> {
    return this.send(base, key, options.method ?? "GET", options);
  }

  /**
   * GET or HEAD for a reader that answers a client with the result (the coordinator): any status is returned;
   * a body of at most `bufferBytes` comes whole, a longer one as a stream (read it or destroy it).
   */
  async read(
    base: string,
    key: string,
    options: NodeRequestOptions & {
      headers?: Record<string, string>;
      method?: "GET" | "HEAD";
      bufferBytes: number;
    },
  ): Promise<LeanReply> {
    validateKey(key);
    const method = options.method ?? "GET";
    const timeoutMs = options.timeoutMs ?? this.defaults.timeoutMs ?? 10_000;
    if (this.lean) {
      try {
        return await this.lean.request({
          method,
          origin: base,
          path: keyToPath(key),
          headers: options.headers,
          timeoutMs,
          bufferBytes: options.bufferBytes,
        });
      } catch (err) {
        if (!isUnsupported(err)) throw err;
      }
    }
    const res = await this.send(base, key, method, options);
    const headers: Record<string, string> = {};
    for (const [name, v] of Object.entries(res.headers)) if (v !== undefined) headers[name] = headerText(v);
    const reply: LeanReply = {
      status: res.statusCode,
      headers,
      body: undefined,
      stream: undefined,
      bodyTaken: false,
    };
    const length = Number(headers["content-length"] ?? Number.NaN);
    if (method === "HEAD" || length <= options.bufferBytes) {
      try {
        reply.body = Buffer.from(await res.body.arrayBuffer());
      } catch (err) {
        throw upstreamError(err, method, base);
      }
    } else {
      reply.stream = res.body;
    }
    return reply;
  }

  /** DELETE: true when deleted, false when it was absent. */
  async delete(base: string, key: string, options: NodeRequestOptions = {}): Promise<boolean> {
    const res = await this.send(base, key, "DELETE", { ...options, headers: this.authHeaders(options) });
    if (res.statusCode === 404) {
      await res.body.dump();
      return false;
    }
    await expectStatus(res, [204], base, key);
    return true;
  }

  /** One frame of writes to `<base>/_backpack/batch`: the node's answer for each record, in order. */
  private async sendBatch(base: string, token: string | undefined, frame: Buffer): Promise<BatchAnswer[]> {
    const timeoutMs = this.defaults.timeoutMs ?? 10_000;
    const headers: Record<string, string> = {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      "content-type": BATCH_CONTENT_TYPE,
    };
    let answer: { status: number; text: string } | undefined;
    if (this.lean) {
      try {
        const reply = await this.lean.request({
          method: "POST",
          origin: base,
          path: BATCH_PATH,
          headers,
          body: frame,
          timeoutMs,
          bufferBytes: Number.POSITIVE_INFINITY,
        });
        answer = { status: reply.status, text: reply.body?.toString("utf8") ?? "" };
      } catch (err) {
        if (!isUnsupported(err)) throw err;
      }
    }
    if (answer === undefined) {
      try {
        const res = await request(base + BATCH_PATH, {
          method: "POST",
          dispatcher: this.dispatcher,
          headers,
          body: frame,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        });
        answer = { status: res.statusCode, text: await res.body.text() };
      } catch (err) {
        throw upstreamError(err, "POST", base);
      }
    }
    const { status, text } = answer;
    if (status === 404 || status === 405) {
      throw new BackpackError("UPSTREAM_FAILED", `${base} takes no batches`, {
        details: { [NO_BATCHES]: true },
      });
    }
    if (status === 200) {
      try {
        const doc = JSON.parse(text) as { results?: unknown };
        if (Array.isArray(doc.results)) return doc.results as BatchAnswer[];
      } catch {
        // Said below.
      }
      throw new BackpackError(
        "UPSTREAM_FAILED",
        `${base} answered a batch with no results: ${text.slice(0, 200)}`,
      );
    }
    throw answerError(status, text, base, BATCH_PATH);
  }

  private authHeaders(options: NodeRequestOptions): Record<string, string> {
    const token = options.token ?? this.defaults.token;
    return token ? { authorization: `Bearer ${token}` } : {};
  }

  private async send(
    base: string,
    key: string,
    method: Dispatcher.HttpMethod,
    options: NodeRequestOptions & {
      headers?: Record<string, string>;
      body?: Buffer | AsyncIterable<Uint8Array>;
    },
  ): Promise<Dispatcher.ResponseData> {
    const timeoutMs = options.timeoutMs ?? this.defaults.timeoutMs ?? 10_000;
    // A URL parser would resolve `a/../b` to `b` before it leaves this process: refuse bad keys here.
    validateKey(key);
    try {
      return await request(base + keyToPath(key), {
        method,
        dispatcher: this.dispatcher,
        headers: options.headers,
        body:
          options.body === undefined || Buffer.isBuffer(options.body)
            ? options.body
            : Readable.from(options.body),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: options.signal,
      });
    } catch (err) {
      throw upstreamError(err, method, base);
    }
  }
}
