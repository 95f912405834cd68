import { pickStoredHeaders } from "../common/stored-headers.js";
import { checksum, parseChecksum } from "../common/checksum.js";
import {
  compareVersions,
  legacyVersion,
  parseVersion,
  VERSION_HEADER,
  type Version,
} from "../common/version.js";
import { hasCode, toBackpackError } from "../common/errors.js";
import { BACKGROUND_READ_HEADER } from "../common/http.js";
import type { NodeClient } from "../client/node-client.js";
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
  /**
   * The target could not be reached, or (`answered`) takes no writes now (full, overloaded, stopping): retry once
   * it is back (the caller pauses the target).
   */
  | { kind: "target-down"; reason: string; answered: boolean }
  /** No source could be reached: the copy waits for one to come back, without spending an attempt. */
  | { kind: "sources-down"; reason: string }
  /** Something else failed: retry with backoff. */
  | { kind: "retry"; reason: string };

/** Files up to this size are copied through one buffer; larger ones are streamed, never held whole. */
const BUFFER_MAX_BYTES = 256 * 1024;

/**
 * Carries out one task against the storage nodes, in two requests for a copy (as a plain GET→PUT loop would):
 * GET from a source that holds the task's version or a newer one, then a PUT of that version on the target
 * with its checksum as `expectedCrc`, so that the target refuses a body that does not match (a corrupt source,
 * a truncated stream: the next source is tried), and answers 409 for a version it already holds (skipped) or
 * when it holds a newer write or delete of the key (superseded: the refusal means the task is done). A source
 * holding a newer write or a newer delete than the task's passes that on instead: the newer operation's own
 * task may have been lost with a coordinator that died before queuing it. A delete writes a tombstone of the
 * task's version on the target, also where the file never arrived. Small files pass through one buffer;
 * larger ones are streamed, never held whole.
 */
export class Copier {
  constructor(
    private readonly client: NodeClient,
    private readonly options: { token?: string; timeoutMs: number },
  ) {}

  async run(task: ReplicationTask, map: ClusterSnapshot): Promise<Outcome> {
    const target = map.servers[task.target];
    if (!target) return { kind: "retry", reason: `target server ${task.target} is not in the cluster map` };
    const req = { timeoutMs: this.options.timeoutMs, token: this.options.token };
    const version = taskVersion(task);
    if (version === undefined)
      return { kind: "retry", reason: `the task's version ${task.version} is not valid` };

    if (task.op === "delete") return this.deleteOn(target.url, task.key, version, req);

    if (parseChecksum(task.crc) === undefined) {
      return { kind: "retry", reason: `the task's checksum ${task.crc} is not valid` };
    }
    const shard = map.shards[task.shard];
    const candidates = [...new Set([...task.sources, ...(shard?.servers ?? [])])].filter(
      (s) => s !== task.target,
    );
    let gone = 0;
    let away = 0;
    const problems: string[] = [];
    for (const id of candidates) {
      const source = map.servers[id];
      if (!source) {
        problems.push(`source ${id} is not in the cluster map`);
        continue;
      }
      let res;
      try {
        res = await this.client.read(source.url, task.key, {
          ...req,
          bufferBytes: BUFFER_MAX_BYTES,
          // Copies and repairs are background work: the source keeps its read cache for its clients.
          headers: { [BACKGROUND_READ_HEADER]: "1" },
        });
      } catch (err) {
        if (unreachable(err)) away++;
        problems.push(`GET ${source.url}: ${toBackpackError(err).message}`);
        continue;
      }
      if (res.status === 404) {
        // A delete newer than the task on the source: the target gets it too (its own task may have been lost
        // with a coordinator that died before queuing it).
        const deleted = parseVersion(res.headers[VERSION_HEADER]);
        if (deleted && compareVersions(deleted, version) > 0) {
          return this.deleteOn(target.url, task.key, deleted, req);
        }
        gone++;
        continue;
      }
      if (res.status !== 200) {
        res.stream?.destroy();
        problems.push(`GET ${source.url} answered ${res.status}${codeOf(res.body)}`);
        continue;
      }
      const sourceCrc = parseChecksum(res.headers["x-backpack-checksum"] ?? "");
      const sourceVersion = parseVersion(res.headers[VERSION_HEADER]);
      if (sourceVersion === undefined || sourceCrc === undefined) {
        res.stream?.destroy();
        problems.push(
          `GET ${source.url} answered without a version or checksum (a node older than this replicator)`,
        );
        continue;
      }
      // A task queued before versions existed names its version by checksum only. A source holding a newer
      // write than the task's has that version copied instead: its own task may have been lost with a
      // coordinator that died before queuing it, and the target takes it only if it has nothing newer.
      if (task.version !== undefined && compareVersions(sourceVersion, version) < 0) {
        res.stream?.destroy();
        problems.push(`${source.url} does not hold the task's version yet`);
        continue;
      }
      const crc = sourceCrc;
      const size = Number(res.headers["content-length"]);
      let sourceFailed = false;
      let body: Buffer | AsyncIterable<Uint8Array>;
      if (res.body !== undefined) {
        // Small files (the common case) arrive whole and are checked here: cheaper than a stream per copy.
        body = res.body;
        if (body.length !== size || checksum(body) !== crc) {
          problems.push(`GET ${source.url}: the body does not match the checksum (corrupt replica)`);
          continue;
        }
      } else {
        body = watch(res.stream!, () => (sourceFailed = true));
      }
      try {
        const stored = await this.client.copy(target.url, task.key, body, {
          ...req,
          size,
          contentType: res.headers["content-type"] || undefined,
          // The file's stored headers go with every copy, as the source answers them.
          headers: pickStoredHeaders(res.headers),
          expectedCrc: crc,
          version: sourceVersion,
        });
        if (stored !== "stored") res.stream?.destroy();
        if (stored === "same") return { kind: "skipped" };
        if (stored === "newer") return { kind: "superseded", reason: NEWER };
        return { kind: "copied", bytes: size };
      } catch (err) {
        res.stream?.destroy();
        const e = toBackpackError(err);
        if (sourceFailed || hasCode(e, "CHECKSUM_MISMATCH")) {
          problems.push(`copy from ${source.url} refused: ${e.message}`);
          continue;
        }
        // A node answers a conditional PUT of a large body (over 4 MiB) before reading it and then closes the
        // connection, which a client still sending may see as a reset: look whether the target has it.
        if (await this.targetHolds(target.url, task.key, sourceVersion, req)) return { kind: "skipped" };
        return failure(err, `PUT ${target.url}`);
      }
    }
    if (problems.length === 0 && gone > 0) {
      return { kind: "superseded", reason: "no source holds this version any more (deleted or overwritten)" };
    }
    // Every source that could hold the file is away: waiting for one costs no attempt.
    if (away > 0 && away === problems.length && gone === 0) {
      return { kind: "sources-down", reason: problems.join("; ") };
    }
    return { kind: "retry", reason: problems.join("; ") || "the shard lists no source" };
  }

  /** A tombstone of `version` on the target: done whether or not it held the file; superseded if it has newer. */
  private async deleteOn(
    url: string,
    key: string,
    version: Version,
    req: { timeoutMs: number; token: string | undefined },
  ): Promise<Outcome> {
    try {
      const done = await this.client.deleteVersion(url, key, { ...req, version });
      if (done.state === "newer") return { kind: "superseded", reason: NEWER };
      return done.state === "deleted" ? { kind: "deleted" } : { kind: "skipped" };
    } catch (err) {
      return failure(err, `DELETE ${url}`);
    }
  }

  /** Whether the target answers HEAD with this version (false when it cannot be asked either). */
  private async targetHolds(
    url: string,
    key: string,
    version: Version,
    req: { timeoutMs: number; token: string | undefined },
  ): Promise<boolean> {
    try {
      const held = (await this.client.head(url, key, req))?.version;
      return held !== undefined && compareVersions(held, version) === 0;
    } catch {
      return false;
    }
  }
}

const NEWER = "the target holds a newer write or delete";

/**
 * The version a task is about; a task queued before versions existed stands for a version stamped when it was
 * queued (its `createdAt`), which is what its delete meant: remove what was written before then.
 */
function taskVersion(task: ReplicationTask): Version | undefined {
  return task.version === undefined ? legacyVersion(task.createdAt) : parseVersion(task.version);
}

/**
 * Transport failures (refused, reset, timeout) mean the node is away, and a full, overloaded or stopping node
 * takes no writes for now: both wait for the target; anything else is retried as is.
 */
function failure(err: unknown, what: string): Outcome {
  const e = toBackpackError(err);
  const status = (e.details?.status as number | undefined) ?? 0;
  const transport = (e.code === "UPSTREAM_FAILED" || e.code === "UPSTREAM_TIMEOUT") && status === 0;
  const unavailable = e.code === "NO_SPACE" || e.code === "OVERLOADED" || e.code === "SHUTTING_DOWN";
  const reason = `${what}: ${e.message}`;
  return transport || unavailable
    ? { kind: "target-down", reason, answered: unavailable }
    : { kind: "retry", reason };
}

/** A source that could not be asked at all (refused, reset, timeout), as opposed to one that answered. */
function unreachable(err: unknown): boolean {
  const e = toBackpackError(err);
  return (e.code === "UPSTREAM_FAILED" || e.code === "UPSTREAM_TIMEOUT") && e.details?.status === undefined;
}

/** The node's error code from a JSON error body, as ` CODE` (empty when there is none). */
function codeOf(body: Buffer | undefined): string {
  try {
    const j = JSON.parse(body?.toString("utf8") ?? "") as { code?: unknown };
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
