import { buildConfig, check } from "../common/config.js";
import type { RingMemberConfig } from "../ring/config.js";
import { DEFAULT_TOMBSTONE_GRACE_MS } from "../storage/store-options.js";
import type { SyncMode } from "../storage/types.js";

/** Everything a storage node needs, validated once and frozen. Sizes in bytes, times in ms. */
export interface NodeConfig {
  /** Volumes, index checkpoints and temp files live here (created on start). */
  dataDir: string;
  host: string;
  /** 0 picks a free port; the service's `url` tells which. */
  port: number;
  /** Largest body a PUT may carry (declared or chunked); past it: 413 BODY_TOO_LARGE. */
  maxBodyBytes: number;
  /** Uploads being received at once; one more is refused with 503 OVERLOADED rather than queued. */
  maxInflightUploads: number;
  /**
   * Body bytes of uploads being received at once (declared lengths, chunked bodies as they arrive). One
   * upload is always admitted when none is in flight, so a single body up to `maxBodyBytes` always fits.
   */
  maxInflightBytes: number;
  /** Time allowed to receive a request's headers (slow-loris guard); past it: 408 and the connection closes. */
  headersTimeoutMs: number;
  /** Idle time allowed between two pieces of a request body; past it: 408 and nothing is stored. */
  bodyTimeoutMs: number;
  /**
   * Slowest body rate allowed, bytes per second averaged over each `bodyTimeoutMs` of waiting on the client;
   * slower: 408 and nothing is stored, so a trickling client cannot hold an upload slot for ever. 0: off.
   */
  minBodyRate: number;
  /** Idle keep-alive connections are closed after this. */
  keepAliveTimeoutMs: number;
  /** With a token, PUT and DELETE need `Authorization: Bearer <token>`; GET and HEAD stay open. */
  writeToken: string | undefined;
  /** `batch`: acknowledged after a shared fsync (default). `none`: no fsync, a crash loses recent writes. */
  sync: SyncMode;
  /** A volume file rolls over past this size. */
  volumeMaxBytes: number;
  /** A sealed volume is compacted once this share of it (0-1) is garbage. */
  compactGarbageRatio: number;
  /** Memory for verified records of up to 1 MiB read lately (answered without disk I/O); 0 turns it off. */
  readCacheBytes: number;
  /**
   * How long a delete is remembered (its tombstone refuses older writes and copies). A node away for longer
   * must be refilled from its replicas, not merged: a delete it missed may be forgotten by then.
   */
  tombstoneGraceMs: number;
  /** Bytes per second the background scrub verifies at most (0 turns it off). */
  scrubBytesPerSec: number;
  /** A scrub pass starts at most this often (a restart resumes or begins one at once). */
  scrubEveryMs: number;
  /**
   * Let repair merge this node even when its data was away longer than `tombstoneGraceMs` (deletes it missed
   * and the others forgot may come back). Without it such a node is refused by repair until it is wiped.
   */
  rejoin: boolean;
  /** Membership in the ring (on the node's HTTP port), or undefined: no ring (docs/ring.md). */
  ring: Readonly<RingMemberConfig> | undefined;
}

export const NODE_DEFAULTS: Readonly<Omit<NodeConfig, "dataDir" | "writeToken" | "ring">> = Object.freeze({
  host: "127.0.0.1",
  port: 0,
  maxBodyBytes: 1024 ** 3,
  maxInflightUploads: 256,
  maxInflightBytes: 256 * 1024 ** 2,
  headersTimeoutMs: 20_000,
  bodyTimeoutMs: 30_000,
  // Lower than the coordinator's (1 KiB/s over 20 s), which cuts a slow client first.
  minBodyRate: 256,
  keepAliveTimeoutMs: 5_000,
  sync: "batch",
  volumeMaxBytes: 1024 ** 3,
  compactGarbageRatio: 0.5,
  readCacheBytes: 256 * 1024 ** 2,
  tombstoneGraceMs: DEFAULT_TOMBSTONE_GRACE_MS,
  scrubBytesPerSec: 8 * 1024 ** 2,
  scrubEveryMs: 24 * 3600 * 1000,
  rejoin: false,
});

/** Builds the node's config from layers (defaults first); every problem is reported at once. */
export function nodeConfig(...layers: ReadonlyArray<Partial<NodeConfig> | undefined>): Readonly<NodeConfig> {
  return buildConfig<NodeConfig>("storage node", [NODE_DEFAULTS, ...layers], (c, problems) => {
    check.nonEmpty(problems, "dataDir", c.dataDir);
    check.nonEmpty(problems, "host", c.host);
    check.port(problems, "port", c.port);
    check.positiveInt(problems, "maxBodyBytes", c.maxBodyBytes);
    check.positiveInt(problems, "maxInflightUploads", c.maxInflightUploads);
    check.positiveInt(problems, "maxInflightBytes", c.maxInflightBytes);
    check.positiveInt(problems, "headersTimeoutMs", c.headersTimeoutMs);
    check.positiveInt(problems, "bodyTimeoutMs", c.bodyTimeoutMs);
    check.nonNegative(problems, "minBodyRate", c.minBodyRate);
    check.positiveInt(problems, "keepAliveTimeoutMs", c.keepAliveTimeoutMs);
    check.positiveInt(problems, "volumeMaxBytes", c.volumeMaxBytes);
    check.nonNegative(problems, "readCacheBytes", c.readCacheBytes);
    check.positiveInt(problems, "tombstoneGraceMs", c.tombstoneGraceMs);
    check.nonNegative(problems, "scrubBytesPerSec", c.scrubBytesPerSec);
    check.nonNegative(problems, "scrubEveryMs", c.scrubEveryMs);
    check.oneOf(problems, "sync", c.sync, ["batch", "none"]);
    if (!(c.compactGarbageRatio > 0 && c.compactGarbageRatio < 1)) {
      problems.push(`compactGarbageRatio must be between 0 and 1 (e.g. 0.5), got ${c.compactGarbageRatio}`);
    }
    if (c.writeToken !== undefined && c.writeToken.length === 0) {
      problems.push("writeToken must not be empty (leave it unset to keep writes open)");
    }
  });
}
