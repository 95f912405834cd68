import type { ServerResponse } from "node:http";
import { sendJson } from "../common/http.js";
import type { CoordinatorStats, StatusDocument, StatusSample } from "../client/coordinator-client.js";
import type { ServiceRing } from "../ring/service-ring.js";
import { clusterView } from "./cluster-handler.js";
import type { CoordinatorContext } from "./context.js";

const SAMPLE_EVERY_MS = 2000;
/** 10 minutes of samples. */
const KEEP = 300;

/** The coordinator's figures every 2 s over the last 10 minutes (`GET /status`, `history`). */
export class StatusHistory {
  private readonly samples: StatusSample[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sampling = false;

  constructor(private readonly collect: () => Promise<CoordinatorStats>) {}

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), SAMPLE_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  list(): StatusSample[] {
    return [...this.samples];
  }

  private async sample(): Promise<void> {
    if (this.sampling) return; // a slow queue must not pile samples up
    this.sampling = true;
    try {
      const s = await this.collect();
      this.samples.push({
        t: Date.now(),
        uploads: s.processed_uploads,
        failed: s.failed_uploads,
        aborted: s.aborted_uploads,
        bytesIn: s.processed_bytes,
        reads: s.processed_reads,
        bytesOut: s.read_bytes,
        queue: s.queue_length,
        lagMs: s.replication_lag_ms,
        deadLetters: s.dead_letters,
        underReplicated: s.under_replicated_files,
        repairs: s.repair.reduce((n, h) => n + h.repairs.copied + h.repairs.deleted + h.repairs.restored, 0),
      });
      if (this.samples.length > KEEP) this.samples.splice(0, this.samples.length - KEEP);
    } catch {
      // A sample missed: the next one comes in 2 s.
    } finally {
      this.sampling = false;
    }
  }
}

/** `GET /status`: stats, cluster, history and ring in one answer (`backpack status`, the dashboard). */
export async function handleStatus(
  ctx: CoordinatorContext,
  res: ServerResponse,
  url: string,
  stats: CoordinatorStats,
  history: StatusHistory,
  ring: ServiceRing,
): Promise<void> {
  const doc: StatusDocument = {
    coordinator: url,
    at: Date.now(),
    stats,
    cluster: clusterView(ctx),
    history: history.list(),
    ring: ring.ring ? ring.view() : null,
  };
  sendJson(res, 200, doc, { "cache-control": "no-store" });
}
