import { tmpdir } from "node:os";
import { buildConfig, check } from "../common/config.js";
import type { RingMemberConfig } from "../ring/config.js";

/**
 * Which replicas an upload is written to before its answer:
 * - `live` (the default): every node of the shard that is not down or suspect, at once;
 * - `all`: every node of the shard, and a 200 only when every one holds it (`X-Backpack-Replicas: all`);
 * - `one`: one node, the others by queued copies (the original's way, kept as the weaker choice).
 */
export type ReplicaMode = "live" | "one" | "all";

export const REPLICA_MODES: readonly ReplicaMode[] = ["live", "one", "all"];

/** Everything a coordinator needs, validated once and frozen. Sizes in bytes, times in ms. */
export interface CoordinatorConfig {
  host: string;
  /** 0 picks a free port; the service's `url` tells which. */
  port: number;
  /** Largest upload accepted (declared or chunked); past it: 413 BODY_TOO_LARGE before a byte goes to a node. */
  maxBodyBytes: number;
  /**
   * Uploads up to this size are kept in memory while they stream to the first node, so a node failing
   * mid-way is replaced by the next one without asking the client again. Larger uploads stream through once
   * (see body-source.ts); chunked ones past it are spooled to `tmpDir`.
   */
  retainBytes: number;
  /** Where chunked uploads larger than `retainBytes` are spooled (removed after the upload). */
  tmpDir: string;
  /**
   * Memory for upload bodies held whole, over all uploads (bodies kept for a retry, chunked bodies read
   * before their shard is chosen). Past it chunked bodies are spooled at once and declared ones stream through
   * without being kept, so no crowd of uploads, stalled or not, grows the coordinator past it.
   */
  maxBufferedBytes: number;
  /** Longest silence allowed while receiving an upload's body; past it 408 (the client's fault, no node's). */
  bodyTimeoutMs: number;
  /** Slowest body rate allowed, bytes per second over each `bodyTimeoutMs` of waiting; slower: 408. 0: off. */
  minBodyRate: number;
  /** With a token, PUT and DELETE need `Authorization: Bearer <token>`; reads and /stats stay open. */
  writeToken: string | undefined;
  /** The token the storage nodes expect for PUT/DELETE (their write token), if they have one. */
  nodeToken: string | undefined;
  /**
   * The token of the admin actions (`POST /admin/...`, the dashboard's buttons); the write token when unset.
   * With neither, admin actions are refused.
   */
  adminToken: string | undefined;
  /** Time a node may take to answer a request, and the longest silence inside a transfer. */
  nodeTimeoutMs: number;
  /**
   * Where an upload is written before its 200 (`X-Backpack-Replicas` chooses per request): `live`, every node
   * of its shard that is not down, at once, with a hinted-handoff copy task for the others; `all`, every node;
   * `one`, one node and a queued copy task for each other one (the original's way, the weaker choice).
   */
  replicas: ReplicaMode;
  /** `live` uploads: durable copies needed for a 200 (a shard with fewer nodes needs them all); fewer: 503. */
  writeQuorum: number;
  /**
   * A node whose write falls behind the other replicas of the upload (has taken no byte, or not answered, while
   * another one is ahead) for this long is cut and handed off.
   */
  writeTimeoutMs: number;
  /** Time a queue push may take before the coordinator copies to the other nodes itself instead. */
  queueTimeoutMs: number;
  /**
   * New uploads wait (up to 5 s each) while more copies than this are due in the replication queue, so that
   * uploads slow down to what the replicators sustain and a new file does not stay a single copy for long.
   * 0: no limit.
   */
  maxBacklog: number;
  /** Usage deltas are sent to the cluster map in one batch this often. */
  usageFlushMs: number;
  /** A node seen failing is tried after the healthy replicas for this long (or until it answers again). */
  suspectMs: number;
  /** Time in-flight requests get to finish when the coordinator stops. */
  drainMs: number;
  /** Time allowed to receive a request's headers (slow-loris guard). */
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** Membership in the ring (on the coordinator's HTTP port), or undefined: no ring (docs/ring.md). */
  ring: Readonly<RingMemberConfig> | undefined;
}

export const COORDINATOR_DEFAULTS: Readonly<
  Omit<CoordinatorConfig, "writeToken" | "nodeToken" | "adminToken" | "ring">
> = Object.freeze({
  host: "127.0.0.1",
  port: 0,
  maxBodyBytes: 1024 ** 3,
  retainBytes: 8 * 1024 ** 2,
  tmpDir: tmpdir(),
  maxBufferedBytes: 128 * 1024 ** 2,
  // Shorter and stricter than the nodes' (30 s, 256 B/s): the coordinator cuts a slow client first.
  bodyTimeoutMs: 20_000,
  minBodyRate: 1024,
  nodeTimeoutMs: 10_000,
  replicas: "live",
  writeQuorum: 1,
  writeTimeoutMs: 2_000,
  queueTimeoutMs: 2_000,
  maxBacklog: 100,
  usageFlushMs: 1_000,
  suspectMs: 5_000,
  drainMs: 5_000,
  headersTimeoutMs: 20_000,
  keepAliveTimeoutMs: 5_000,
});

/** Builds the coordinator's config from layers (defaults first); every problem is reported at once. */
export function coordinatorConfig(
  ...layers: ReadonlyArray<Partial<CoordinatorConfig> | undefined>
): Readonly<CoordinatorConfig> {
  return buildConfig<CoordinatorConfig>(
    "coordinator",
    [
      {
        writeToken: undefined,
        nodeToken: undefined,
        adminToken: undefined,
        ring: undefined,
        ...COORDINATOR_DEFAULTS,
      },
      ...layers,
    ],
    (c, problems) => {
      check.nonEmpty(problems, "host", c.host);
      check.port(problems, "port", c.port);
      check.positiveInt(problems, "maxBodyBytes", c.maxBodyBytes);
      check.nonNegative(problems, "retainBytes", c.retainBytes);
      check.nonNegative(problems, "maxBacklog", c.maxBacklog);
      check.nonNegative(problems, "maxBufferedBytes", c.maxBufferedBytes);
      check.nonNegative(problems, "minBodyRate", c.minBodyRate);
      check.nonEmpty(problems, "tmpDir", c.tmpDir);
      check.positiveInt(problems, "writeQuorum", c.writeQuorum);
      if (!REPLICA_MODES.includes(c.replicas)) {
        problems.push(`replicas must be one of ${REPLICA_MODES.join(", ")} (got ${String(c.replicas)})`);
      }
      for (const name of [
        "nodeTimeoutMs",
        "queueTimeoutMs",
        "usageFlushMs",
        "suspectMs",
        "drainMs",
        "headersTimeoutMs",
        "keepAliveTimeoutMs",
        "bodyTimeoutMs",
        "writeTimeoutMs",
      ] as const) {
        check.positiveInt(problems, name, c[name]);
      }
      for (const name of ["writeToken", "nodeToken", "adminToken"] as const) {
        if (c[name] !== undefined && c[name].length === 0) {
          problems.push(`${name} must not be empty (leave it unset for none)`);
        }
      }
    },
  );
}
