import { randomBytes } from "node:crypto";
import { Agent, request } from "undici";

/** One upload of an `UploadLoad`: when it started and ended (ms on the load's clock) and how it was answered. */
export interface UploadRecord {
  key: string;
  body: Buffer;
  startedMs: number;
  endedMs: number;
  /** HTTP status; 0 when no answer came (connection error). */
  status: number;
  shard: string | undefined;
  error: string | undefined;
}

/**
 * Uploads small files without pause from `clients` concurrent clients, spread over the coordinators
 * (client i uses coordinator i mod n), and records every upload. For the ring's fault tests and benchmarks:
 * what clients see while a node is frozen or killed.
 */
export class UploadLoad {
  readonly records: UploadRecord[] = [];
  private running = false;
  private loops: Promise<void>[] = [];
  private seq = 0;
  private readonly agent = new Agent({ connections: 64, keepAliveTimeout: 10_000 });

  constructor(
    private readonly coordinators: () => readonly string[],
    private readonly options: { clients: number; sizeBytes: number; prefix: string; clock: () => number },
  ) {}

  start(): void {
    this.running = true;
    this.loops = Array.from({ length: this.options.clients }, (_, i) => this.loop(i));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    await this.agent.close();
  }

  /** Uploads answered in [fromMs, toMs) (by their end), and of those the ones answered 200. */
  answered(fromMs: number, toMs: number): { all: number; ok: number } {
    let all = 0;
    let ok = 0;
    for (const r of this.records) {
      if (r.endedMs < fromMs || r.endedMs >= toMs) continue;
      all++;
      if (r.status === 200) ok++;
    }
    return { all, ok };
  }

  /** Uploads not answered 200 that started at or after `fromMs`. */
  failedSince(fromMs: number): UploadRecord[] {
    return this.records.filter((r) => r.startedMs >= fromMs && r.status !== 200);
  }

  private async loop(client: number): Promise<void> {
    while (this.running) {
      const urls = this.coordinators();
      const base = urls[client % urls.length] as string;
      const key = `${this.options.prefix}${this.seq++}`;
      const body = randomBytes(this.options.sizeBytes);
      const startedMs = this.options.clock();
      let status = 0;
      let text = "";
      let error: string | undefined;
      try {
        const res = await request(`${base}/${key}`, {
          method: "PUT",
          body,
          dispatcher: this.agent,
          headersTimeout: 120_000,
          bodyTimeout: 120_000,
        });
        status = res.statusCode;
        text = await res.body.text();
      } catch (err) {
        error = (err as Error).message;
      }
      let shard: string | undefined;
      if (status === 200) shard = (JSON.parse(text) as { shard_id?: string }).shard_id;
      else error ??= text;
      this.records.push({ key, body, startedMs, endedMs: this.options.clock(), status, shard, error });
    }
  }
}
