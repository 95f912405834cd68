import type { Readable } from "node:stream";
import { request, type Dispatcher } from "undici";
import { BackpackError, isErrorCode, type ErrorCode } from "../common/errors.js";
import { keyToPath } from "../common/key.js";
import { shardPath } from "./coordinator-client.js";
import { upstreamError } from "./node-client.js";

/** One file of a coordinator's sorted listing (`GET /_list`, docs/http-api.md). */
export interface ListedFile {
  key: string;
  shard: string;
  size: number;
  version: string;
  lastModified: string;
  contentType: string;
  /** Stored headers (`x-backpack-meta-*` and the like), names in lower case. */
  headers?: Record<string, string>;
}

export interface ListPage {
  entries: ListedFile[];
  truncated: boolean;
}

export interface PutFileOptions {
  /** The shard to store it on (`X-Backpack-Shard`): a targeted PUT. */
  shard: string;
  size: number;
  /** Headers stored with the file (Content-Type, Cache-Control, X-Backpack-Meta-*, ...). */
  headers?: Record<string, string>;
  /** CRC-32 of the body, 8 hex digits: every node refuses a body that does not match it. */
  checksum?: string;
}

/**
 * The coordinator's native API as a client that names files itself uses it (the S3 front): targeted PUTs with
 * stored headers, reads and deletes by `<shard>:<name>`, and the sorted listing across the cluster. Errors
 * are BackpackErrors; `details.upstreamCode` keeps the code the coordinator answered, also one this version
 * does not know.
 */
export class ObjectClient {
  constructor(
    private readonly dispatcher: Dispatcher,
    private readonly defaults: { token?: string; timeoutMs?: number } = {},
  ) {}

  async put(
    base: string,
    name: string,
    body: Buffer | Readable,
    options: PutFileOptions,
  ): Promise<{ shardId: string; version: string | undefined }> {
    const headers: Record<string, string> = {
      ...options.headers,
      ...this.auth(),
      "content-length": String(options.size),
      "x-backpack-shard": options.shard,
    };
    if (options.checksum !== undefined) headers["x-backpack-checksum"] = options.checksum;
    const res = await this.send(base, keyToPath(name), "PUT", headers, body);
    if (res.statusCode !== 200) throw await answerError(res, base, name);
    const json = (await res.body.json()) as { shard_id?: unknown };
    const version = res.headers["x-backpack-version"];
    return {
      shardId: typeof json.shard_id === "string" ? json.shard_id : options.shard,
      version: typeof version === "string" ? version : undefined,
    };
  }

  /** GET or HEAD `/<shard>:<name>`: any status is returned; the caller consumes or dumps the body. */
  async get(
    base: string,
    shard: string,
    name: string,
    options: { method?: "GET" | "HEAD"; headers?: Record<string, string> } = {},
  ): Promise<Dispatcher.ResponseData> {
    return this.send(base, shardPath(shard, name), options.method ?? "GET", options.headers ?? {});
  }

  /** True when deleted, false when the shard did not hold it. */
  async delete(base: string, shard: string, name: string): Promise<boolean> {
    const res = await this.send(base, shardPath(shard, name), "DELETE", this.auth());
    if (res.statusCode === 404) {
      await res.body.dump();
      return false;
    }
    if (res.statusCode !== 204) throw await answerError(res, base, name);
    await res.body.dump();
    return true;
  }

  async list(base: string, options: { prefix: string; after?: string; limit?: number }): Promise<ListPage> {
    const q = new URLSearchParams({ prefix: options.prefix });
    if (options.after !== undefined) q.set("after", options.after);
    if (options.limit !== undefined) q.set("limit", String(options.limit));
    const res = await this.send(base, `/_list?${q.toString().replace(/\+/g, "%20")}`, "GET", {});
    if (res.statusCode !== 200) throw await answerError(res, base, "/_list");
    return (await res.body.json()) as ListPage;
  }

  private auth(): Record<string, string> {
    return this.defaults.token ? { authorization: `Bearer ${this.defaults.token}` } : {};
  }

  private async send(
    base: string,
    path: string,
    method: Dispatcher.HttpMethod,
    headers: Record<string, string>,
    body?: Buffer | Readable,
  ): Promise<Dispatcher.ResponseData> {
    const timeoutMs = this.defaults.timeoutMs ?? 60_000;
    try {
      return await request(base + path, {
        method,
        dispatcher: this.dispatcher,
        headers,
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    } catch (err) {
      throw upstreamError(err, method, base);
    }
  }
}

/** The coordinator's JSON error as a BackpackError, keeping its raw code in `details.upstreamCode`. */
export async function answerError(
  res: Dispatcher.ResponseData,
  base: string,
  what: string,
): Promise<BackpackError> {
  const status = res.statusCode;
  const text = await res.body.text().catch(() => "");
  let code: ErrorCode = status === 404 ? "NOT_FOUND" : status >= 500 ? "UPSTREAM_FAILED" : "BAD_REQUEST";
  let upstreamCode = "";
  let message = `${base} answered ${status} for ${what}`;
  try {
    const body = JSON.parse(text) as { code?: unknown; error?: unknown };
    if (typeof body.code === "string") upstreamCode = body.code;
    if (isErrorCode(body.code)) code = body.code;
    if (typeof body.error === "string") message = body.error;
  } catch {
    // Not a JSON error body.
  }
  return new BackpackError(code, message, { details: { status, upstreamCode } });
}

/** The code a coordinator answered, as it said it (see `answerError`). */
export function upstreamCode(err: unknown): string | undefined {
  const details = (err as { details?: { upstreamCode?: unknown } }).details;
  return typeof details?.upstreamCode === "string" ? details.upstreamCode : undefined;
}
