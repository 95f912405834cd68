import { BackpackError } from "../common/errors.js";
import { silentLogger, type Logger } from "../common/logger.js";
import type { MaintenanceTurnWait, StoreOptions, SyncMode } from "./types.js";

export interface ResolvedStoreOptions {
  dir: string;
  sync: SyncMode;
  volumeMaxBytes: number;
  compactGarbageRatio: number;
  maxBufferedBytes: number;
  readCacheBytes: number;
  checkpointEveryBytes: number;
  tombstoneGraceMs: number;
  scrubBytesPerSec: number;
  scrubEveryMs: number;
  keyOrderWaitMs: number;
  turn: MaintenanceTurnWait;
  origin: number;
  log: Logger;
}

/** How long a delete is remembered: a node away longer than this must be refilled, not merged. */
export const DEFAULT_TOMBSTONE_GRACE_MS = 7 * 24 * 3600 * 1000;

/** Fills in the defaults and checks every option, reporting all problems at once. */
export function resolveStoreOptions(options: StoreOptions): ResolvedStoreOptions {
  const opts: ResolvedStoreOptions = {
    dir: options.dir,
    sync: options.sync ?? "batch",
    volumeMaxBytes: options.volumeMaxBytes ?? 1 << 30,
    compactGarbageRatio: options.compactGarbageRatio ?? 0.5,
    maxBufferedBytes: options.maxBufferedBytes ?? 8 << 20,
    readCacheBytes: options.readCacheBytes ?? 256 << 20,
    checkpointEveryBytes: options.checkpointEveryBytes ?? 256 << 20,
    tombstoneGraceMs: options.tombstoneGraceMs ?? DEFAULT_TOMBSTONE_GRACE_MS,
    scrubBytesPerSec: options.scrubBytesPerSec ?? 0,
    scrubEveryMs: options.scrubEveryMs ?? 24 * 3600 * 1000,
    keyOrderWaitMs: options.keyOrderWaitMs ?? 1000,
    turn: options.turn ?? (() => Promise.resolve()),
    origin: options.origin ?? 0,
    log: options.log ?? silentLogger,
  };
  const problems: string[] = [];
  if (typeof opts.dir !== "string" || opts.dir === "") problems.push("dir must be a path");
  if (opts.sync !== "batch" && opts.sync !== "none") problems.push(`sync must be "batch" or "none"`);
  if (!(Number.isSafeInteger(opts.volumeMaxBytes) && opts.volumeMaxBytes > 0)) {
    problems.push("volumeMaxBytes must be a positive integer");
  }
  if (!(Number.isSafeInteger(opts.maxBufferedBytes) && opts.maxBufferedBytes >= 0)) {
    problems.push("maxBufferedBytes must be a non-negative integer");
  }
  if (!(Number.isSafeInteger(opts.readCacheBytes) && opts.readCacheBytes >= 0)) {
    problems.push("readCacheBytes must be a non-negative integer");
  }
  if (!(opts.checkpointEveryBytes > 0)) problems.push("checkpointEveryBytes must be positive");
  if (!(Number.isSafeInteger(opts.tombstoneGraceMs) && opts.tombstoneGraceMs >= 0)) {
    problems.push("tombstoneGraceMs must be a non-negative integer");
  }
  if (!(opts.scrubBytesPerSec >= 0)) problems.push("scrubBytesPerSec must be 0 or more");
  if (!(opts.scrubEveryMs >= 0)) problems.push("scrubEveryMs must be 0 or more");
  if (!(opts.keyOrderWaitMs >= 0)) problems.push("keyOrderWaitMs must be 0 or more");
  if (!(Number.isInteger(opts.origin) && opts.origin >= 0 && opts.origin <= 0xffff)) {
    problems.push("origin must be an integer in 0-65535");
  }
  if (!(opts.compactGarbageRatio > 0 && opts.compactGarbageRatio <= 1)) {
    problems.push("compactGarbageRatio must be in (0, 1]");
  }
  if (problems.length > 0) {
    throw new BackpackError("INVALID_ARGUMENT", `invalid store options: ${problems.join("; ")}`);
  }
  return opts;
}
