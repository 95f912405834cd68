import { createHash, randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { seededRandom } from "../../src/common/random.js";
import { classify, type OpKind, type OpRecord } from "./acked-history.js";

/**
 * The load of "acknowledged means final": clients that each own a disjoint set of keys, one op per key at a
 * time, random interleaving across keys. Each lane of a client takes a free key of its client and runs a short
 * sequence on it, back to back:
 * - PUT, then DELETE of the address it was answered (0-20 ms later): the "delete comes back" case;
 * - PUT v1, then PUT v2 (0-50 ms later): the "overwrite reverted" case (same shard half the time with 2);
 * - a single PUT (a new key, or an overwrite), or a DELETE of an address acknowledged earlier.
 * Every op goes through a coordinator picked at random and is recorded with its outcome. A refused connection
 * (the coordinator is down: nothing was sent) is tried once more through the other coordinator.
 *
 * Randomness is seeded per lane: a seed gives the same choices as far as the timing of real processes allows
 * (which keys are free when a lane picks one depends on it).
 */

/** An answer from a coordinator: HTTP status (0 = none) and body text, or the transport's error code. */
export interface Answer {
  status: number;
  text: string;
  error?: string;
}

/** How the workload reaches the cluster (HTTP in the harness; a fake in unit tests). */
export interface Transport {
  coordinatorCount: number;
  put(coordinator: number, key: string, body: Buffer): Promise<Answer>;
  del(coordinator: number, shard: string, key: string): Promise<Answer>;
}

export interface WorkloadOptions {
  seed: number;
  clients: number;
  keysPerClient: number;
  /** Sequences in flight per client, each on another key. */
  lanesPerClient: number;
  /** Prefix of every key (`<prefix>c<client>/k<n>`). */
  keyPrefix: string;
  /** Stop issuing new sequences once this many ops were issued (unbounded when undefined). */
  maxOps?: number;
  /** Largest pause between the two ops of a sequence. */
  maxGapMs: number;
  /** ms since the start of the run (shared with the cluster's event log). */
  clock: () => number;
}

/** The first line of every body names its op, so bytes on a node can be traced back to the upload. */
export function bodyFor(opId: number, key: string, size: number): Buffer {
  const head = Buffer.from(`acked-final op=${opId} key=${key}\n`);
  return Buffer.concat([head, randomBytes(Math.max(0, size - head.length))]);
}

export function digestOf(body: Buffer): string {
  return createHash("sha256").update(body).digest("base64url");
}

/** The op id a body's first line names, or undefined. */
export function tagOf(body: Buffer): number | undefined {
  const m = /^acked-final op=(\d+) /.exec(body.subarray(0, 64).toString("latin1"));
  return m ? Number(m[1]) : undefined;
}

/** Mostly small files, some up to 64 KiB (streamed to the node), a few up to ~600 KiB (streamed copies). */
function sizeFrom(random: () => number): number {
  const r = random();
  if (r < 0.7) return 64 + Math.floor(random() * 2000);
  if (r < 0.95) return 2048 + Math.floor(random() * 62 * 1024);
  return 64 * 1024 + Math.floor(random() * 540 * 1024);
}

/** A client's view of one key: the addresses whose last acknowledged op was a PUT. */
interface KeyView {
  key: string;
  busy: boolean;
  present: Set<string>;
}

export class Workload {
  readonly ops: OpRecord[] = [];
  private nextId = 1;
  private stopped = false;
  private failure: unknown;
  private done: Promise<void> = Promise.resolve();

  constructor(
    private readonly transport: Transport,
    private readonly options: WorkloadOptions,
  ) {
    // Each lane holds one key at a time: with no more lanes than keys, a lane always finds a free key.
    if (options.lanesPerClient > options.keysPerClient) {
      throw new Error(`${options.lanesPerClient} lanes per client need as many keys per client`);
    }
  }

  /** Starts every lane; `finished()` resolves once they all stopped. */
  start(): void {
    const lanes: Promise<void>[] = [];
    for (let c = 0; c < this.options.clients; c++) {
      const keys: KeyView[] = Array.from({ length: this.options.keysPerClient }, (_, n) => ({
        key: `${this.options.keyPrefix}c${c}/k${n}`,
        busy: false,
        present: new Set<string>(),
      }));
      for (let l = 0; l < this.options.lanesPerClient; l++) {
        // A stream per lane: which keys are free depends on timing, but no lane's draws on another's.
        const random = seededRandom((this.options.seed ^ Math.imul(c * 64 + l + 1, 0x9e3779b1)) >>> 0);
        lanes.push(this.lane(c + 1, keys, random));
      }
    }
    this.done = Promise.all(lanes).then(
      () => undefined,
      (err: unknown) => {
        this.failure = err;
        this.stopped = true;
      },
    );
  }

  stop(): void {
    this.stopped = true;
  }

  /** Resolves once every lane stopped (after `stop()` or `maxOps`); throws what broke a lane. */
  async finished(): Promise<void> {
    await this.done;
    if (this.failure !== undefined) throw this.failure;
  }

  get issued(): number {
    return this.nextId - 1;
  }

  private get more(): boolean {
    return !this.stopped && (this.options.maxOps === undefined || this.issued < this.options.maxOps);
  }

  private async lane(client: number, keys: KeyView[], random: () => number): Promise<void> {
    while (this.more) {
      const free = keys.filter((k) => !k.busy);
      const view = free[Math.floor(random() * free.length)];
      if (view === undefined) throw new Error("no free key (more lanes than keys)");
      view.busy = true;
      try {
        await this.sequence(client, view, random);
      } finally {
        view.busy = false;
      }
    }
  }

  private async sequence(client: number, view: KeyView, random: () => number): Promise<void> {
    const r = random();
    const gap = (maxMs: number): Promise<unknown> => {
      // A third of the second ops follow at once; the others after up to maxMs.
      const ms = random() < 0.33 ? 0 : Math.floor(random() * maxMs);
      return ms === 0 ? Promise.resolve() : sleep(ms);
    };
    if (r < 0.4) {
      const shard = await this.put(client, view, random);
      if (shard === undefined || !this.more) return;
      await gap(Math.min(20, this.options.maxGapMs));
      await this.del(client, view, shard, random);
    } else if (r < 0.8) {
      await this.put(client, view, random);
      if (!this.more) return;
      await gap(this.options.maxGapMs);
      await this.put(client, view, random);
    } else if (r < 0.9 && view.present.size > 0) {
      const shards = [...view.present].sort();
      await this.del(client, view, shards[Math.floor(random() * shards.length)]!, random);
    } else {
      await this.put(client, view, random);
    }
  }

  /** One PUT (tried once more through the other coordinator when the first refuses the connection). */
  private async put(client: number, view: KeyView, random: () => number): Promise<string | undefined> {
    const size = sizeFrom(random);
    let coordinator = 1 + Math.floor(random() * this.transport.coordinatorCount);
    for (let attempt = 0; attempt < 2; attempt++) {
      const id = this.nextId++;
      const body = bodyFor(id, view.key, size);
      const op = this.begin(id, client, view.key, "put", coordinator);
      op.digest = digestOf(body);
      op.size = body.length;
      const answer = await this.transport.put(coordinator, view.key, body);
      this.end(op, answer);
      if (op.outcome === "ack") {
        const shard = shardOf(answer.text);
        if (shard === undefined) {
          op.outcome = "unknown";
          op.detail = `200 without a shard_id: ${answer.text.slice(0, 100)}`;
          return undefined;
        }
        op.shard = shard;
        view.present.add(shard);
        return shard;
      }
      if (!(op.status === 0 && op.outcome === "refused")) return undefined;
      coordinator = (coordinator % this.transport.coordinatorCount) + 1;
    }
    return undefined;
  }

  private async del(client: number, view: KeyView, shard: string, random: () => number): Promise<void> {
    let coordinator = 1 + Math.floor(random() * this.transport.coordinatorCount);
    for (let attempt = 0; attempt < 2; attempt++) {
      const op = this.begin(this.nextId++, client, view.key, "delete", coordinator);
      op.shard = shard;
      const answer = await this.transport.del(coordinator, shard, view.key);
      this.end(op, answer);
      if (op.outcome === "ack") view.present.delete(shard);
      if (!(op.status === 0 && op.outcome === "refused")) return;
      coordinator = (coordinator % this.transport.coordinatorCount) + 1;
    }
  }

  private begin(id: number, client: number, key: string, kind: OpKind, coordinator: number): OpRecord {
    const op: OpRecord = {
      id,
      client,
      key,
      kind,
      coordinator,
      startMs: this.options.clock(),
      endMs: 0,
      status: 0,
      outcome: "unknown",
      detail: "",
    };
    this.ops.push(op);
    return op;
  }

  private end(op: OpRecord, answer: Answer): void {
    op.endMs = this.options.clock();
    op.status = answer.status;
    op.outcome = classify(answer.status, answer.error);
    if (answer.status === 0) op.detail = answer.error ?? "no answer";
    else if (op.outcome !== "ack") op.detail = errorCodeOf(answer.text);
  }
}

/** The shard id of a coordinator's `{"shard_id":"<id>"}`. */
export function shardOf(text: string): string | undefined {
  try {
    const json = JSON.parse(text) as { shard_id?: unknown };
    return typeof json.shard_id === "string" ? json.shard_id : undefined;
  } catch {
    return undefined;
  }
}

function errorCodeOf(text: string): string {
  try {
    const { code, error: _error, ...details } = JSON.parse(text) as Record<string, unknown>;
    // The code, and what the answer says besides its message (a 404 DELETE: each server's answer).
    if (typeof code === "string")
      return Object.keys(details).length > 0 ? `${code} ${JSON.stringify(details)}` : code;
  } catch {
    // Not JSON.
  }
  return text.slice(0, 80);
}
