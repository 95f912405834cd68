import { checksum, etagOf, parseChecksum } from "../common/checksum.js";
import { hasCode, toBackpackError } from "../common/errors.js";
import { expectStatus, headerText, type NodeClient } from "../client/node-client.js";
import type { ClusterSnapshot } from "../cluster/types.js";
import type { ReplicationTask } from "../queue/types.js";

/** What became of one task. */
export type Outcome =
  /** The target now holds the object (bytes streamed). */
  | { kind: "copied"; bytes: number }
  /** The target already held it (same checksum), or a delete found nothing to delete. */
  | { kind: "skipped" }
  | { kind: "deleted" }
  /** A newer write or a delete overtook this task: its own task covers the newer state. */
  | { kind: "superseded"; reason: string }
  /** The target could not be reached: retry once it is back (the caller pauses the target). */
  | { kind: "target-down"; reason: string }
  /** Something else failed: retry with backoff. */
  | { kind: "retry"; reason: string };

/**
 * Clock slack when comparing a node's `Last-Modified` (whole seconds, another machine's clock) with a task's
 * `createdAt`: only an object written clearly after the task was queued counts as newer.
 */
const NEWER_SLACK_MS = 1000;

/** Files up to this size are copied through one buffer; larger ones are streamed, never held whole. */
const BUFFER_MAX_BYTES = 256 * 1024;

/**
 * Carries out one task against the storage nodes. A copy streams GET from a source into PUT on the target
 * with the task's checksum as `expectedCrc`, so the target refuses a body that does not match (a corrupt
 * source, a truncated stream) and the next source is tried; nothing larger than a stream chunk is held.
 */
export class Copier {
  constructor(
    private readonly client: NodeClient,
    private readonly options: { token?: string; timeoutMs: number },
  ) {}

  /**
   * Asks the target what it holds, in one keep-alive request: a GET of one byte with the task's ETag as
   * `If-None-Match` answers 304 when the target has this exact version. (A HEAD would do, but undici closes
   * the connection after every HEAD, and a new connection per task halves the copy rate.)
   */
  private async probe(
    url: string,
    task: ReplicationTask,
    crc: number | undefined,
    req: { timeoutMs: number; signal?: AbortSignal; token?: string },
  ): Promise<Probe> {
    const headers: Record<string, string> = { range: "bytes=0-0" };
    if (crc !== undefined && task.op === "copy") headers["if-none-match"] = etagOf(crc, task.size);
    const res = await this.client.get(url, task.key, { ...req, headers });
    if (res.statusCode === 304) {
      await res.body.dump();
      return "same";
    }
    if (res.statusCode === 404) {
      await res.body.dump();
      return undefined;
    }
    if (res.statusCode === 200 || res.statusCode === 206 || res.statusCode === 416) {
      await res.body.dump();
      return { lastModified: headerText(res.headers["last-modified"]) };
    }
    await expectStatus(res, [200], url, task.key);
    return undefined;
  }

  async run(task: ReplicationTask, map: ClusterSnapshot, signal?: AbortSignal): Promise<Outcome> {
    const target = map.servers[task.target];
    if (!target) return { kind: "retry", reason: `target server ${task.target} is not in the cluster map` };
    const req = { timeoutMs: this.options.timeoutMs, signal, token: this.options.token };

    const crc = parseChecksum(task.crc);
    let present: Probe;
    try {
      present = await this.probe(target.url, task, crc, req);
    } catch (err) {
      return failure(err, `probe ${target.url}`);
    }
    if (present === "same") return { kind: "skipped" };
    if (present && newerThan(present.lastModified, task.createdAt)) {
      return { kind: "superseded", reason: `target holds a version written after the task was queued` };
    }

    if (task.op === "delete") {
      if (!present) return { kind: "skipped" };
      try {
        await this.client.delete(target.url, task.key, req);
        return { kind: "deleted" };
      } catch (err) {
        return failure(err, `DELETE ${target.url}`);
      }
    }

    const shard = map.shards[task.shard];
    const candidates = [...new Set([...task.sources, ...(shard?.servers ?? [])])].filter(
      (s) => s !== task.target,
    );
    let gone = 0;
    const problems: string[] = [];
    for (const id of candidates) {
      const source = map.servers[id];
      if (!source) {
        problems.push(`source ${id} is not in the cluster map`);
        continue;
      }
      let res;
      try {
        res = await this.client.get(source.url, task.key, req);
      } catch (err) {
        problems.push(`GET ${source.url}: ${toBackpackError(err).message}`);
        continue;
      }
      if (res.statusCode === 404) {
        await res.body.dump();
        gone++;
        continue;
      }
      if (res.statusCode !== 200) {
        problems.push(`GET ${source.url} answered ${res.statusCode}${await codeOf(res.body)}`);
        continue;
      }
      const sourceCrc = parseChecksum(headerText(res.headers["x-backpack-checksum"]));
      if (sourceCrc !== crc) {
        // Overwritten since the task was queued (or a stale replica): not the version this task is about.
        await res.body.dump();
        gone++;
        continue;
      }
      const size = Number(headerText(res.headers["content-length"]));
      let sourceFailed = false;
      let body: Buffer | AsyncIterable<Uint8Array>;
      if (size <= BUFFER_MAX_BYTES) {
        // Small files (the common case) are read whole and checked here: cheaper than a stream per copy.
        try {
          body = Buffer.from(await res.body.arrayBuffer());
        } catch (err) {
          problems.push(`GET ${source.url}: ${toBackpackError(err).message}`);
          continue;
        }
        if (body.length !== size || checksum(body) !== crc) {
          problems.push(`GET ${source.url}: the body does not match the checksum (corrupt replica)`);
          continue;
        }
      } else {
        body = watch(res.body, () => (sourceFailed = true));
      }
      try {
        await this.client.put(target.url, task.key, body, { ...req, size, expectedCrc: crc });
        return { kind: "copied", bytes: size };
      } catch (err) {
        const e = toBackpackError(err);
        if (sourceFailed || hasCode(e, "CHECKSUM_MISMATCH")) {
          problems.push(`copy from ${source.url} refused: ${e.message}`);
          res.body.destroy();
          continue;
        }
        res.body.destroy();
        return failure(err, `PUT ${target.url}`);
      }
    }
    if (problems.length === 0 && gone > 0) {
      return { kind: "superseded", reason: "no source holds this version any more (deleted or overwritten)" };
    }
    return { kind: "retry", reason: problems.join("; ") || "the shard lists no source" };
  }
}

/** What the target holds: the task's exact version, another one, or nothing. */
type Probe = "same" | { lastModified: string } | undefined;

/** Transport failures (refused, reset, timeout) mean the node is away; anything else is retried as is. */
function failure(err: unknown, what: string): Outcome {
  const e = toBackpackError(err);
  const status = (e.details?.status as number | undefined) ?? 0;
  const transport = (e.code === "UPSTREAM_FAILED" || e.code === "UPSTREAM_TIMEOUT") && status === 0;
  return { kind: transport ? "target-down" : "retry", reason: `${what}: ${e.message}` };
}

function newerThan(lastModified: string, createdAt: number): boolean {
  const t = Date.parse(lastModified);
  return Number.isFinite(t) && t >= createdAt + NEWER_SLACK_MS;
}

async function codeOf(body: { json(): Promise<unknown>; dump(): Promise<void> }): Promise<string> {
  try {
    const j = (await body.json()) as { code?: unknown };
    return typeof j.code === "string" ? ` ${j.code}` : "";
  } catch {
    return "";
  }
}

/** Passes a stream through, noting whether it failed (so a broken source is not blamed on the target). */
async function* watch(source: AsyncIterable<Uint8Array>, onError: () => void): AsyncIterable<Uint8Array> {
  try {
    for await (const chunk of source) yield chunk;
  } catch (err) {
    onError();
    throw err;
  }
}
