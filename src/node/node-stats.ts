import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { StoreStats } from "../storage/types.js";
import { createRegistry } from "../common/metrics.js";

/** One kind of request as the original's `/stats` reports it: how many, bytes of bodies, time spent. */
class OpStats {
  count = 0;
  bytes = 0;
  totalMs = 0;

  add(bytes: number, ms: number): void {
    this.count++;
    this.bytes += bytes;
    this.totalMs += ms;
  }

  toJSON(): { count: number; bytes: number; avg: number } {
    // avg in ms, as the original's /stats had it.
    return {
      count: this.count,
      bytes: this.bytes,
      avg: this.count === 0 ? 0 : Math.round((this.totalMs / this.count) * 1000) / 1000,
    };
  }
}

export type RefusalReason =
  | "overloaded"
  | "too_large"
  | "timeout"
  | "aborted"
  | "unauthorized"
  | "invalid_key"
  | "bad_request"
  | "checksum_mismatch"
  | "precondition"
  | "stale_version"
  | "shutting_down";

/**
 * The node's counters. The hot path only bumps plain numbers and observes one histogram; Prometheus reads
 * the numbers when scraped (`collect`), so a request pays no label hashing.
 */
export class NodeStats {
  readonly gets = new OpStats();
  readonly puts = new OpStats();
  readonly deletes = new OpStats();
  readonly refused: Record<RefusalReason, number> = {
    overloaded: 0,
    too_large: 0,
    timeout: 0,
    aborted: 0,
    unauthorized: 0,
    invalid_key: 0,
    bad_request: 0,
    checksum_mismatch: 0,
    precondition: 0,
    stale_version: 0,
    shutting_down: 0,
  };
  notFound = 0;
  notModified = 0;
  readonly registry: Registry;
  private readonly startedAt: number;
  private readonly getSeconds: Histogram;
  private readonly putSeconds: Histogram;

  constructor(
    private readonly storeStats: () => StoreStats | undefined,
    private readonly inflight: () => { uploads: number; bytes: number },
    now: number,
  ) {
    this.startedAt = now;
    this.registry = createRegistry({}, false);
    const r = this.registry;
    const buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];
    this.getSeconds = new Histogram({
      name: "backpack_node_get_duration_seconds",
      help: "Time to answer a GET with a body, until the last byte is handed to the socket",
      buckets,
      registers: [r],
    });
    this.putSeconds = new Histogram({
      name: "backpack_node_put_duration_seconds",
      help: "Time to store a PUT durably, from its headers to the 201",
      buckets,
      registers: [r],
    });
    const refused = this.refused;
    const counter = (name: string, help: string, read: () => number): void => {
      new Counter({
        name,
        help,
        registers: [r],
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    };
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          this.set(read());
        },
      });
    };
    counter("backpack_node_gets_total", "GETs answered with a body", () => this.gets.count);
    counter("backpack_node_get_bytes_total", "Body bytes answered to GETs", () => this.gets.bytes);
    counter("backpack_node_puts_total", "PUTs stored", () => this.puts.count);
    counter("backpack_node_put_bytes_total", "Body bytes stored by PUTs", () => this.puts.bytes);
    counter("backpack_node_deletes_total", "DELETEs that removed a key", () => this.deletes.count);
    counter("backpack_node_not_found_total", "Requests answered 404", () => this.notFound);
    counter("backpack_node_not_modified_total", "Requests answered 304", () => this.notModified);
    new Counter({
      name: "backpack_node_refused_total",
      help: "Requests refused, by reason",
      labelNames: ["reason"],
      registers: [r],
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(refused)) this.inc({ reason }, n);
      },
    });
    const store = (pick: (s: StoreStats) => number) => () => {
      const s = this.storeStats();
      return s ? pick(s) : 0;
    };
    counter(
      "backpack_node_checksum_errors_total",
      "Stored records that failed their checksum on read",
      store((s) => s.checksumErrors),
    );
    counter(
      "backpack_node_compactions_total",
      "Volume compactions done",
      store((s) => s.compactions),
    );
    counter(
      "backpack_node_read_cache_hits_total",
      "Reads of records up to 1 MiB answered from the read cache",
      store((s) => s.readCache.hits),
    );
    counter(
      "backpack_node_read_cache_misses_total",
      "Reads of records up to 1 MiB that went to the disk",
      store((s) => s.readCache.misses),
    );
    gauge(
      "backpack_node_read_cache_bytes",
      "Bytes held by the read cache",
      store((s) => s.readCache.bytes),
    );
    gauge(
      "backpack_node_objects",
      "Objects stored",
      store((s) => s.objects),
    );
    gauge(
      "backpack_node_live_bytes",
      "Bytes of live bodies",
      store((s) => s.liveBytes),
    );
    gauge(
      "backpack_node_garbage_bytes",
      "Bytes of superseded records",
      store((s) => s.garbageBytes),
    );
    gauge(
      "backpack_node_volumes",
      "Volume files",
      store((s) => s.volumes),
    );
    gauge(
      "backpack_node_tombstones",
      "Deletes remembered within their grace period",
      store((s) => s.tombstones),
    );
    counter(
      "backpack_node_scrub_bytes_total",
      "Bytes of records the background scrub verified",
      store((s) => s.scrub.bytesVerified),
    );
    counter(
      "backpack_node_scrub_damaged_total",
      "Damaged records the background scrub found (quarantined for repair)",
      store((s) => s.scrub.damagedFound),
    );
    counter(
      "backpack_node_scrub_passes_total",
      "Complete scrub passes over every volume",
      store((s) => s.scrub.passesCompleted),
    );
    gauge("backpack_node_inflight_uploads", "Uploads being received", () => this.inflight().uploads);
    gauge("backpack_node_inflight_upload_bytes", "Bytes reserved by uploads", () => this.inflight().bytes);
  }

  observeGet(bytes: number, ms: number): void {
    this.gets.add(bytes, ms);
    this.getSeconds.observe(ms / 1000);
  }

  observePut(bytes: number, ms: number): void {
    this.puts.add(bytes, ms);
    this.putSeconds.observe(ms / 1000);
  }

  /** The original's `/stats` JSON (`gets`, `puts` with count/bytes/avg ms) plus the node's own fields. */
  snapshot(now: number): Record<string, unknown> {
    const s = this.storeStats();
    const inflight = this.inflight();
    return {
      gets: this.gets.toJSON(),
      puts: this.puts.toJSON(),
      deletes: this.deletes.toJSON(),
      not_found: this.notFound,
      not_modified: this.notModified,
      refused: { ...this.refused },
      inflight_uploads: inflight.uploads,
      inflight_upload_bytes: inflight.bytes,
      uptime: Math.floor((now - this.startedAt) / 1000),
      store: s ?? null,
    };
  }
}
