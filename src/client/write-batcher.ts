import { storedHeadersBytes } from "../common/stored-headers.js";
import { batchRecordBytes, encodeBatch, MAX_BATCH_RECORDS, type BatchRecord } from "../common/batch-frame.js";
import { BackpackError, isErrorCode } from "../common/errors.js";
import { parseChecksum } from "../common/checksum.js";
import { parseVersion, type Version } from "../common/version.js";

/** What a node said about one record of a batch (`POST /_backpack/batch`, docs/http-api.md). */
export interface BatchAnswer {
  status: number;
  crc?: string;
  version?: string;
  code?: string;
  error?: string;
  current?: string;
}

/** Sends one frame to a node and resolves with its answers, one per record in order (or throws for all). */
export type BatchSender = (base: string, token: string | undefined, frame: Buffer) => Promise<BatchAnswer[]>;

interface Pending {
  record: BatchRecord;
  bytes: number;
  resolve(stored: { crc: number; version: Version | undefined }): void;
  reject(err: Error): void;
  /** Answered already (or given up by its caller): a later answer is dropped. */
  done: boolean;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface NodeLine {
  base: string;
  token: string | undefined;
  pending: Pending[];
  inflight: number;
  scheduled: boolean;
}

/**
 * Coalesces small writes to one storage node into one request per node per event-loop turn: every write asked
 * for during a turn waits for the check phase (`setImmediate`), after the loop has read every socket that was
 * ready, and then goes out with the others in one frame; the node stores them together (one group commit) and
 * answers each on its own. At most `maxInflight` frames are in flight per node: writes asked for meanwhile wait
 * and go in the next frame (so frames grow with the load, as a group commit does). A frame that fails as a
 * whole (the node is down, a timeout, a refusal of the frame) fails each of its writes with that error; a write
 * whose caller gives up (its signal) is answered at once and its late result dropped.
 */
export class WriteBatcher {
  private readonly lines = new Map<string, NodeLine>();

  constructor(
    private readonly send: BatchSender,
    private readonly options: { maxInflight: number; maxFrameBytes: number },
  ) {}

  put(
    base: string,
    token: string | undefined,
    record: BatchRecord,
    signal?: AbortSignal,
  ): Promise<{ crc: number; version: Version | undefined }> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(aborted(base));
        return;
      }
      // One line per node and token (a frame carries one Authorization).
      const id = token === undefined ? base : `${base} ${token}`;
      let line = this.lines.get(id);
      if (line === undefined) {
        line = { base, token, pending: [], inflight: 0, scheduled: false };
        this.lines.set(id, line);
      }
      const p: Pending = {
        record,
        bytes:
          batchRecordBytes(
            Buffer.byteLength(record.key),
            record.headers ? storedHeadersBytes(record.headers) : 0,
            record.body.length,
          ) + 256,
        resolve,
        reject,
        done: false,
        signal,
        onAbort: undefined,
      };
      if (signal) {
        p.onAbort = () => this.settle(p, aborted(base));
        signal.addEventListener("abort", p.onAbort, { once: true });
      }
      line.pending.push(p);
      if (!line.scheduled) {
        line.scheduled = true;
        setImmediate(() => {
          line.scheduled = false;
          this.flush(id, line);
        });
      }
    });
  }

  private flush(id: string, line: NodeLine): void {
    while (line.pending.length > 0 && line.inflight < this.options.maxInflight) {
      const frame: Pending[] = [];
      let bytes = 0;
      while (line.pending.length > 0 && frame.length < MAX_BATCH_RECORDS) {
        const next = line.pending[0]!;
        if (frame.length > 0 && bytes + next.bytes > this.options.maxFrameBytes) break;
        line.pending.shift();
        if (next.done) continue;
        frame.push(next);
        bytes += next.bytes;
      }
      if (frame.length === 0) continue;
      line.inflight++;
      void this.sendFrame(line, frame).finally(() => {
        line.inflight--;
        if (line.pending.length > 0) this.flush(id, line);
        else if (line.inflight === 0 && !line.scheduled) this.lines.delete(id);
      });
    }
  }

  private async sendFrame(line: NodeLine, frame: Pending[]): Promise<void> {
    const { base } = line;
    let answers: BatchAnswer[];
    try {
      answers = await this.send(base, line.token, encodeBatch(frame.map((p) => p.record)));
      if (answers.length !== frame.length) {
        throw new BackpackError(
          "UPSTREAM_FAILED",
          `${base} answered ${answers.length} results for a batch of ${frame.length}`,
        );
      }
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      for (const p of frame) this.settle(p, e);
      return;
    }
    for (let i = 0; i < frame.length; i++) {
      const p = frame[i]!;
      const a = answers[i]!;
      const crc = parseChecksum(a.crc ?? "");
      if (a.status === 201 && crc !== undefined) {
        this.settle(p, undefined, { crc, version: parseVersion(a.version) });
      } else {
        const code = isErrorCode(a.code) ? a.code : a.status >= 500 ? "UPSTREAM_FAILED" : "BAD_REQUEST";
        this.settle(
          p,
          new BackpackError(code, `${base}: ${a.error ?? `answered ${a.status}`}`, {
            details: { status: a.status, ...(a.current !== undefined ? { current: a.current } : {}) },
          }),
        );
      }
    }
  }

  private settle(
    p: Pending,
    err: Error | undefined,
    stored?: { crc: number; version: Version | undefined },
  ): void {
    if (p.done) return;
    p.done = true;
    if (p.onAbort) p.signal?.removeEventListener("abort", p.onAbort);
    if (err) p.reject(err);
    else p.resolve(stored!);
  }
}

function aborted(base: string): BackpackError {
  return new BackpackError("UPSTREAM_FAILED", `PUT ${base}: given up (the write was cut)`);
}
