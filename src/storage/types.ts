import type { Logger } from "../common/logger.js";
import type { StoredHeaders } from "../common/stored-headers.js";
import type { Version } from "../common/version.js";
import type { ScrubStats } from "./scrubber.js";

/**
 * The storage engine of one node (Haystack-style append-only volumes, in-memory index). No HTTP here:
 * `node/` serves it.
 */
export type SyncMode = "batch" | "none";

export interface StoreOptions {
  /** The node's data dir; volumes, index checkpoints and temp files live under it. */
  dir: string;
  /** `batch` (default): a write is acknowledged after an fsync shared by concurrent writes. `none`: no fsync (benchmarks only; a crash loses recent writes). */
  sync?: SyncMode;
  /** A volume rolls over to a new file past this size. Default 1 GiB. */
  volumeMaxBytes?: number;
  /** Compact a sealed volume when its garbage passes this ratio (0-1). Default 0.5. */
  compactGarbageRatio?: number;
  /**
   * Memory for verified bodies of records (at most 1 MiB each) read lately, answered from there without
   * a read or a checksum (see read-cache.ts). Default 256 MiB; 0 turns it off.
   */
  readCacheBytes?: number;
  /** Bodies up to this size are buffered in memory before the append; larger ones are spooled to a temp file. Default 8 MiB. */
  maxBufferedBytes?: number;
  /**
   * Write an index checkpoint after this many bytes have been appended since the last one (or after
   * max(100,000, half the index) records, whichever comes first, so that the tail replayed at start stays
   * short). Default 256 MiB.
   */
  checkpointEveryBytes?: number;
  /**
   * How long a delete's tombstone is kept (index and volumes), ms: within it, the store refuses any write or
   * copy older than the delete. Default 7 days.
   */
  tombstoneGraceMs?: number;
  /** Bytes per second the background scrub verifies at most; 0 (the default here) turns it off. */
  scrubBytesPerSec?: number;
  /** Time from the start of one scrub pass to the start of the next, at least. Default 24 h. */
  scrubEveryMs?: number;
  /**
   * How long the first listing (`listKeys`) waits for the key order, which it starts building, before it is
   * answered OVERLOADED (retry shortly) while the build goes on. Default 1 s.
   */
  keyOrderWaitMs?: number;
  /**
   * Resolves when this node may do background work (compaction, scrub) now: the cluster lets one node of a
   * shard at a time (node/maintenance-turn.ts). At once when not given. Awaited between slices of the work.
   */
  turn?: MaintenanceTurnWait;
  /** The origin id (0-65535) of versions this store stamps itself (writes that come without one). Default 0. */
  origin?: number;
  log?: Logger;
}

/** What the index knows of one stored object. */
export interface ObjectInfo {
  key: string;
  /** Body length in bytes. */
  size: number;
  /** CRC-32 of the body alone (the record checksum also covers header and key); the ETag and queue tasks use it. */
  bodyCrc: number;
  /** Write time, ms since the epoch (the version's stamp in ms). */
  writeTime: number;
  /** The write's version (see common/version.ts). */
  version: Version;
  contentType: string | undefined;
  /** The stored headers (Cache-Control, Content-*, Expires, X-Backpack-Meta-*), when the file has any. */
  headers?: StoredHeaders;
  /** Set when the record failed its checksum (quarantined until repair restores it): never served. */
  damaged?: true;
}

export interface StoreDigest {
  buckets: number;
  /** Entries: objects and tombstones. */
  entries: number;
  /** Two u32 per bucket. */
  hashes: Uint32Array;
}

/** One key as a replica holds it. */
export interface ListedEntry {
  key: string;
  version: Version;
  crc: number;
  size: number;
  /** A delete (tombstone) within its grace period. */
  deleted: boolean;
  /** The record failed its checksum (a read or the scrub): quarantined, waiting for repair. */
  damaged: boolean;
}

/** One key of the store's key order (`listKeys`): a listed entry with what a listing answers of the file. */
export interface KeyEntry extends ListedEntry {
  contentType: string | undefined;
  headers?: StoredHeaders;
}

/** The newest version a store holds of a key: a stored object, or a delete still within its grace period. */
export interface HeldVersion {
  version: Version;
  deleted: boolean;
}

export interface PutOptions {
  /** Declared length (Content-Length); the body must match it exactly or the put fails and nothing is indexed. */
  size?: number;
  /** Refuse (BODY_TOO_LARGE) a body longer than this, also when no size was declared. */
  maxBytes: number;
  contentType?: string;
  /** Kept with the file and answered back (names lower-case); at most 8 KiB encoded, else HEADERS_TOO_LARGE. */
  headers?: StoredHeaders;
  /** When given, the body's CRC-32 must equal it, else CHECKSUM_MISMATCH and nothing is indexed. */
  expectedCrc?: number;
  /**
   * The write's version. The put is refused with STALE_VERSION (details.current: the held version) when the
   * store holds this version or a newer one of the key, a delete included. Without it the store stamps a
   * version newer than any it holds.
   */
  version?: Version;
  /**
   * Aborts the put (client went away): nothing is indexed and nothing is written (the partial body is dropped
   * before it reaches a volume). An abort after the body was complete and its append had begun is too late:
   * the write then completes.
   */
  signal?: AbortSignal;
}

export interface StoreStats {
  objects: number;
  /** Deletes remembered (within their grace period) and the index heap they take, estimated. */
  tombstones: number;
  liveBytes: number;
  garbageBytes: number;
  volumes: number;
  /** Damaged records: quarantined at start (remembered, or found by recovery) plus those found since. */
  checksumErrors: number;
  compactions: number;
  /** Bytes of the index structure on the heap (for the memory benchmark). */
  indexHeapBytes: number;
  /** Of those, the bytes of the key order (`listKeys`; sorted-keys.ts). */
  keyOrderBytes: number;
  /** Reads answered from the read cache, reads that missed it (records of at most 1 MiB), and its bytes. */
  readCache: { hits: number; misses: number; bytes: number };
  scrub: ScrubStats;
}

export interface ReadOptions {
  /**
   * Background work reads (replication, repair): a body read from the volume is not kept in the read cache (a
   * hit is still answered from it), so a sweep over every file leaves the clients' hot files where they are.
   */
  background?: boolean;
}

export interface Store {
  /** The index entry, or undefined; no I/O. */
  stat(key: string): ObjectInfo | undefined;
  /**
   * Reads `[start, end)` of the body (whole body by default). Small bodies verify the record checksum before
   * returning; a failure throws CHECKSUM_MISMATCH (logged and counted) and never returns bad bytes. A buffer
   * body may be shared with the read cache: do not modify it.
   */
  read(
    key: string,
    range?: { start: number; end: number },
    options?: ReadOptions,
  ): Promise<{ info: ObjectInfo; body: ReadableBody }>;
  /**
   * `read` for a server answering requests: a record of at most 64 KiB is read with a synchronous positioned
   * read (a page-cached small record costs microseconds, a thread-pool read tens) and returned directly, not
   * in a promise; anything larger goes the way of `read`. Lookup and range errors are thrown, not rejected.
   * The event loop waits for the read, so loop over it only where each call already follows I/O.
   */
  readSmall(
    key: string,
    range?: { start: number; end: number },
    options?: ReadOptions,
  ):
    | { info: ObjectInfo; body: { kind: "buffer"; data: Buffer } }
    | Promise<{ info: ObjectInfo; body: ReadableBody }>;
  /** Stores a body (a stream of chunks or one Buffer); resolves after it is durable (per `sync`). */
  put(key: string, body: AsyncIterable<Uint8Array> | Uint8Array, options: PutOptions): Promise<ObjectInfo>;
  /**
   * Writes a tombstone; resolves once durable with whether a stored object was removed. Without a version,
   * nothing is written when the key is absent. With one, the tombstone is written also for an absent key
   * (a copy still on its way must not bring it back), and the delete is refused with STALE_VERSION when the
   * store holds that version or a newer one.
   */
  delete(key: string, options?: { version?: Version }): Promise<boolean>;
  /** The newest version held of a key (an object or a tombstone), or undefined; no I/O. */
  held(key: string): HeldVersion | undefined;
  /** Drops the tombstones older than the grace period from the index (their records go with compaction). */
  expireTombstones(): number;
  /** The digest of every bucket of keys (see replica-digest.ts): what two replicas compare first. */
  digest(): StoreDigest;
  /** The entries of one digest bucket in key order, after `after` (exclusive), at most `limit`. */
  listBucket(
    bucket: number,
    after: string | undefined,
    limit: number,
  ): { entries: ListedEntry[]; more: boolean };
  /**
   * The keys starting with `prefix`, strictly after `after`, in byte order of their UTF-8, at most `limit`:
   * files and deletes within their grace period (`deleted`), from the index alone (no I/O, no sort: the index
   * keeps its keys in order, from the first listing on: that one waits while the order is built, in slices
   * that leave the node serving). `more` when further keys with the prefix follow. `bare`: without content
   * types and stored headers (what a page's summary needs).
   */
  listKeys(
    prefix: string,
    after: string | undefined,
    limit: number,
    bare?: boolean,
  ): Promise<{ entries: KeyEntry[]; more: boolean }>;
  /** Compacts every volume past the garbage threshold now (also runs by itself in the background). */
  compact(): Promise<void>;
  /** Writes an index checkpoint now. */
  checkpoint(): Promise<void>;
  stats(): StoreStats;
  /** Waits for in-flight writes and compaction, writes a checkpoint, closes files. Idempotent. */
  close(): Promise<void>;
}

/**
 * A body being read: either fully in memory (small records, already verified) or a stream of chunks (large
 * records; the stream errors with CHECKSUM_MISMATCH at the end if the record does not verify, so a proxy sees a
 * broken transfer, never a good-looking wrong file).
 */
export type ReadableBody =
  { kind: "buffer"; data: Buffer } | { kind: "stream"; stream: AsyncIterable<Buffer>; length: number };

/** Waits for the node's turn at background work; rejects or resolves early when `signal` aborts. */
export type MaintenanceTurnWait = (signal: AbortSignal) => Promise<void>;
