import { randomInt } from "node:crypto";
import { join } from "node:path";
import { BackpackError, hasCode } from "../common/errors.js";
import {
  compareVersions,
  formatVersion,
  HybridClock,
  versionTimeMs,
  type Version,
} from "../common/version.js";
import { Compactor } from "./compactor.js";
import { writeCheckpoint } from "./checkpoint.js";
import { diskError } from "./file-io.js";
import { discardBody, receiveBody, receiveBuffer, type IncomingBody } from "./incoming-body.js";
import { IndexTable } from "./index-table.js";
import {
  RECORD_HEADER_BYTES,
  MAX_CONTENT_TYPE_BYTES,
  MAX_KEY_BYTES,
  recordLength,
  type RecordMeta,
} from "./record.js";
import {
  decodeStoredHeaders,
  encodeStoredHeaders,
  MAX_STORED_HEADER_BYTES,
} from "../common/stored-headers.js";
import {
  readVerified,
  readVerifiedSync,
  streamRecord,
  SYNC_READ_MAX_BYTES,
  type RecordLocation,
} from "./record-read.js";
import { QuarantineFile } from "./quarantine-file.js";
import { ReadCache } from "./read-cache.js";
import { Scrubber } from "./scrubber.js";
import { listBucket, listKeys } from "./store-listing.js";
import { DIGEST_BUCKETS } from "./replica-digest.js";
import { recover } from "./recovery.js";
import { resolveStoreOptions, type ResolvedStoreOptions } from "./store-options.js";
import type {
  HeldVersion,
  KeyEntry,
  ListedEntry,
  StoreDigest,
  ObjectInfo,
  PutOptions,
  ReadableBody,
  ReadOptions,
  Store,
  StoreOptions,
  StoreStats,
} from "./types.js";

export type { ResolvedStoreOptions };
import { Volume } from "./volume.js";
import { Writer, type Placed, type QueuedRecord } from "./writer.js";

const EMPTY = Buffer.alloc(0);

type ReadResult = { info: ObjectInfo; body: ReadableBody };
type SmallRead = { info: ObjectInfo; body: { kind: "buffer"; data: Buffer } };

/** Opens (creating if needed) the store in `options.dir`, recovering its index; resolves once it serves. */
export async function openStore(options: StoreOptions): Promise<Store> {
  const opts = resolveStoreOptions(options);
  const state = await recover(opts);
  const store = new DiskStore(opts, state.index, state.volumes, state.release);
  store.expireTombstones();
  await store.quarantined.load();
  store.scrubber.start();
  return store;
}

/** How often expired tombstones are swept out of the index, at most. */
const EXPIRY_SWEEP_MS = 3600_000;

/** The volume store: see docs/storage.md for the format, durability, recovery and compaction. */
export class DiskStore implements Store {
  checksumErrors = 0;
  private readonly readCache: ReadCache;
  private readonly writer: Writer;
  private readonly compactor: Compactor;
  private spoolSeq = 0;
  private closing: Promise<void> | undefined;
  /** Set once the files are being closed: reads are refused from then on. */
  private closed = false;
  /** Puts and deletes under way; `close` waits for them (`settled` is called when the last one ends). */
  private inflight = 0;
  private settled: (() => void) | undefined;
  private bytesSinceCheckpoint = 0;
  private recordsSinceCheckpoint = 0;
  private checkpointing: Promise<void> | undefined;
  private checkpointQueued: Promise<void> | undefined;
  /** Stamps the versions of writes that come without one; moved past every version the store sees. */
  private readonly clock: HybridClock;
  private readonly expiryTimer: NodeJS.Timeout;
  readonly scrubber: Scrubber;
  /** The damaged records, kept in `quarantine.json` across restarts. */
  readonly quarantined: QuarantineFile;

  constructor(
    readonly options: ResolvedStoreOptions,
    readonly index: IndexTable,
    /** Every volume by id; the highest id is the active one. */
    readonly volumes: Map<number, Volume>,
    private readonly releaseLock: () => Promise<void>,
  ) {
    this.writer = new Writer({
      target: { active: () => this.active, rollover: () => this.rollover() },
      sync: options.sync,
      volumeMaxBytes: options.volumeMaxBytes,
      onDurable: (placed) => this.applyDurable(placed),
      log: options.log,
    });
    this.compactor = new Compactor(this, this.writer);
    this.readCache = new ReadCache(options.readCacheBytes);
    this.active = [...volumes.values()].reduce((a, b) => (b.id > a.id ? b : a));
    this.clock = new HybridClock(options.origin);
    this.quarantined = new QuarantineFile(options.dir, index, options.log);
    // One pass: the clock starts past every version held, and records found damaged by recovery (quarantined
    // in the index already) are counted and listed.
    let damaged = 0;
    index.forEach((i) => {
      this.clock.observe(index.versionOf(i));
      if (index.isDamaged(i)) damaged++;
    });
    this.checksumErrors = damaged;
    if (damaged > 0) this.quarantined.save();
    const sweepMs = Math.max(1000, Math.min(EXPIRY_SWEEP_MS, options.tombstoneGraceMs / 4));
    this.expiryTimer = setInterval(() => this.expireTombstones(), sweepMs).unref();
    this.scrubber = new Scrubber(this, {
      dir: options.dir,
      bytesPerSec: options.scrubBytesPerSec,
      everyMs: options.scrubEveryMs,
      turn: options.turn,
      log: options.log,
    });
  }

  /** The volume appends go to: the highest id (compaction never touches it, so the object stays). */
  active: Volume;

  stat(key: string): ObjectInfo | undefined {
    const i = this.index.find(keyBytes(key));
    return i < 0 || this.index.isTombstone(i) ? undefined : this.infoOf(key, i);
  }

  held(key: string): HeldVersion | undefined {
    const i = this.index.find(keyBytes(key));
    return i < 0 ? undefined : { version: this.index.versionOf(i), deleted: this.index.isTombstone(i) };
  }

  async read(
    key: string,
    range?: { start: number; end: number },
    options?: ReadOptions,
  ): Promise<ReadResult> {
    // Always through asynchronous I/O: a caller looping over reads still lets the event loop turn.
    return this.readFrom(key, range, false, options?.background === true);
  }

  readSmall(
    key: string,
    range?: { start: number; end: number },
    options?: ReadOptions,
  ): SmallRead | Promise<ReadResult> {
    return this.readFrom(key, range, true, options?.background === true);
  }

  /**
   * The path of both `read` and `readSmall` (`now`: a record of at most SYNC_READ_MAX_BYTES is read and
   * verified synchronously and returned as it is; `background`: a body read from the volume is not kept in the
   * read cache). Lookup and range errors are thrown synchronously.
   */
  private readFrom(
    key: string,
    range: { start: number; end: number } | undefined,
    now: boolean,
    background: boolean,
  ): SmallRead | Promise<ReadResult> {
    if (this.closed) throw shuttingDown();
    const k = keyBytes(key);
    const i = this.index.find(k);
    if (i < 0 || this.index.isTombstone(i)) throw new BackpackError("NOT_FOUND", "no such key");
    if (this.index.isDamaged(i)) {
      // Quarantined: found damaged by a read or the scrub; repair restores it from a replica.
      throw new BackpackError("CHECKSUM_MISMATCH", `${key} is damaged on this node and waits for repair`);
    }
    const info = this.infoOf(key, i);
    const start = range?.start ?? 0;
    const end = range?.end ?? info.size;
    if (!(
      Number.isInteger(start) &&
      Number.isInteger(end) &&
      start >= 0 &&
      start <= end &&
      end <= info.size
    )) {
      throw new BackpackError("RANGE_NOT_SATISFIABLE", "the range is outside the object", {
        details: { size: info.size },
      });
    }
    const volume = this.volumes.get(this.index.volumeOf(i))!;
    const offset = this.index.offsetOf(i);
    const cache = this.readCache;
    const cacheable = cache.admits(info.size);
    if (cacheable) {
      const hit = cache.get(volume.file, offset);
      if (hit !== undefined) {
        const small: SmallRead = { info, body: { kind: "buffer", data: part(hit, start, end) } };
        if (now) return small;
        // `read` keeps its promise to let the event loop turn, also when no I/O is needed: a caller looping
        // over reads of cached records must not starve everything else (compaction, the writer, sockets).
        return new Promise((resolve) => setImmediate(() => resolve(small)));
      }
    }
    const loc: RecordLocation = {
      file: volume.file,
      salt: volume.salt,
      offset,
      key: k,
      metaBytes: this.index.metaBytesOf(i),
      size: info.size,
      bodyCrc: info.bodyCrc,
    };
    // A cached body is read whole (the read covers the whole record anyway: that is what is verified). A
    // background read (a replica being copied or repaired) leaves the cache as it is: a sweep over every file
    // would otherwise push out the files clients read, and leave their memory to be collected.
    const cached = cacheable && !background;
    const [from, to] = cached ? [0, info.size] : [start, end];
    const keep = (body: Buffer): Buffer => {
      if (cached) cache.set(loc.file, loc.offset, body);
      return cached ? part(body, start, end) : body;
    };
    if (now && info.size <= SYNC_READ_MAX_BYTES && info.size <= this.options.maxBufferedBytes) {
      try {
        return { info, body: { kind: "buffer", data: keep(readVerifiedSync(loc, from, to)) } };
      } catch (err) {
        if (hasCode(err, "CHECKSUM_MISMATCH")) this.countMismatch(key, volume, loc.offset);
        throw err;
      }
    }
    if (info.size <= this.options.maxBufferedBytes) {
      return readVerified(loc, from, to).then(
        (data): ReadResult => ({ info, body: { kind: "buffer", data: keep(data) } }),
        (err: unknown) => {
          if (hasCode(err, "CHECKSUM_MISMATCH")) this.countMismatch(key, volume, loc.offset);
          throw err;
        },
      );
    }
    const release = loc.file.acquire();
    const stream = streamRecord(loc, start, end, () => this.countMismatch(key, volume, loc.offset), release);
    return Promise.resolve({ info, body: { kind: "stream", stream, length: end - start } });
  }

  put(key: string, body: AsyncIterable<Uint8Array> | Uint8Array, options: PutOptions): Promise<ObjectInfo> {
    try {
      const k = keyBytes(key);
      const contentType = options.contentType ? Buffer.from(options.contentType, "utf8") : EMPTY;
      if (contentType.length > MAX_CONTENT_TYPE_BYTES) {
        throw new BackpackError("BAD_REQUEST", `content type is longer than ${MAX_CONTENT_TYPE_BYTES} bytes`);
      }
      if (contentType.includes(0x0a)) throw new BackpackError("BAD_REQUEST", "content type holds a newline");
      const headers = options.headers ? encodeStoredHeaders(options.headers) : EMPTY;
      if (headers.length > MAX_STORED_HEADER_BYTES) {
        throw new BackpackError(
          "HEADERS_TOO_LARGE",
          `stored headers take over ${MAX_STORED_HEADER_BYTES} bytes`,
        );
      }
      // A body in memory (the common small upload) goes to the writer without the stream's async steps: the
      // writer's promise, one for the answer and one for the in-flight count. Its version is checked as it is
      // stamped (at once); a stream's is checked before its body is read too, and again once it has arrived.
      if (body instanceof Uint8Array) {
        const incoming = receiveBuffer(body, options);
        return this.track(() => this.append(key, k, contentType, headers, incoming, options));
      }
      if (options.version) this.refuseStale(k, options.version);
      return this.track(async () => {
        const incoming = await receiveBody(body, options, {
          maxBufferedBytes: this.options.maxBufferedBytes,
          spoolPath: () => join(this.options.dir, "tmp", `${process.pid}-${++this.spoolSeq}.spool`),
        });
        try {
          return await this.append(key, k, contentType, headers, incoming, options);
        } finally {
          await discardBody(incoming);
        }
      });
    } catch (err) {
      // Refused before anything was written (key, content type, size or checksum): a rejection, as for the rest.
      return Promise.reject(err);
    }
  }

  private append(
    key: string,
    k: Buffer,
    contentType: Buffer,
    headers: Buffer,
    incoming: IncomingBody,
    options: PutOptions,
  ): Promise<ObjectInfo> {
    const meta: RecordMeta = {
      key: k,
      contentType,
      headers,
      size: incoming.size,
      version: this.stamp(k, options.version),
      bodyCrc: incoming.crc,
      tombstone: false,
    };
    return this.commit({ meta, body: incoming, signal: options.signal }).then(() => ({
      key,
      size: meta.size,
      bodyCrc: meta.bodyCrc,
      writeTime: versionTimeMs(meta.version),
      version: meta.version,
      contentType: options.contentType || undefined,
      ...(headers.length > 0 ? { headers: options.headers } : {}),
    }));
  }

  delete(key: string, options: { version?: Version } = {}): Promise<boolean> {
    try {
      const k = keyBytes(key);
      const { version } = options;
      return this.track(async () => {
        const i = this.index.find(k);
        const existed = i >= 0 && !this.index.isTombstone(i);
        if (!existed && !version) return false;
        const meta: RecordMeta = {
          key: k,
          contentType: EMPTY,
          headers: EMPTY,
          size: 0,
          version: this.stamp(k, version),
          bodyCrc: 0,
          tombstone: true,
        };
        await this.commit({ meta, body: undefined });
        return existed;
      });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * The version a record gets: the one given (the clock moves past it, so that writes stamped here later are
   * newer), or a fresh stamp newer than every version the store holds or has queued.
   */
  private stamp(k: Buffer, given: Version | undefined): Version {
    if (given) {
      this.refuseStale(k, given);
      this.clock.observe(given);
      return given;
    }
    return this.clock.next();
  }

  /**
   * Throws STALE_VERSION when the store holds `version` or a newer one of the key (a delete included). The
   * same version is taken again when the held record is damaged: that is how repair restores it.
   */
  private refuseStale(k: Buffer, version: Version): void {
    const i = this.index.find(k);
    if (i < 0) return;
    const order = compareVersions(version, this.index.versionOf(i));
    if (order < 0 || (order === 0 && !this.index.isDamaged(i))) {
      throw staleVersion(this.index.versionOf(i), this.index.isTombstone(i));
    }
  }

  /**
   * Appends a record and resolves once it is durable and current. A record overtaken by a newer version of its
   * key while it was queued (two writes of one key in flight at once) is durable but never current: refused.
   */
  private commit(record: QueuedRecord): Promise<void> {
    return this.writer.append(record).then(() => {
      if (record.superseded) throw staleVersion(record.superseded.version, record.superseded.deleted);
    });
  }

  compact(): Promise<void> {
    if (this.closing) return Promise.reject(shuttingDown());
    return this.compactor.run();
  }

  /**
   * Writes a checkpoint whose snapshot is taken after this call. One in progress is not enough (its snapshot
   * may predate a compaction's swap), so a call during one queues the next; calls while one is queued share it.
   */
  checkpoint(): Promise<void> {
    if (this.checkpointQueued) return this.checkpointQueued;
    const previous = this.checkpointing ?? Promise.resolve();
    const next = previous
      .catch(() => undefined)
      .then(async () => {
        this.checkpointQueued = undefined;
        // The snapshot is taken synchronously inside writeCheckpoint, so writes need not stop for it.
        const bytes = this.bytesSinceCheckpoint;
        const records = this.recordsSinceCheckpoint;
        await writeCheckpoint(this);
        this.bytesSinceCheckpoint -= bytes;
        this.recordsSinceCheckpoint -= records;
      });
    this.checkpointQueued = next;
    this.checkpointing = next;
    next
      .finally(() => {
        if (this.checkpointing === next) this.checkpointing = undefined;
      })
      .catch(() => undefined);
    return next;
  }

  stats(): StoreStats {
    let liveBytes = 0;
    let garbageBytes = 0;
    for (const v of this.volumes.values()) {
      liveBytes += v.liveBytes;
      garbageBytes += v.garbageBytes;
    }
    return {
      objects: this.index.count - this.index.tombstones,
      tombstones: this.index.tombstones,
      liveBytes,
      garbageBytes,
      volumes: this.volumes.size,
      checksumErrors: this.checksumErrors,
      compactions: this.compactor.completed,
      indexHeapBytes: this.index.heapBytes(),
      keyOrderBytes: this.index.keyOrderBytes(),
      readCache: { hits: this.readCache.hits, misses: this.readCache.misses, bytes: this.readCache.bytes },
      scrub: this.scrubber.stats(),
    };
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      clearInterval(this.expiryTimer);
      await this.scrubber.stop();
      await this.quarantined.idle();
      if (this.inflight > 0) await new Promise<void>((resolve) => (this.settled = resolve));
      await this.compactor.stop();
      await this.writer.idle();
      try {
        await this.checkpoint();
      } catch (err) {
        this.options.log.warn(
          { err },
          "could not write the index checkpoint at close; the next start rescans",
        );
      }
      this.closed = true;
      for (const v of this.volumes.values()) await v.file.close();
      await this.releaseLock();
    })();
    return this.closing;
  }

  /**
   * Called by the writer once a batch is durable: the index takes the records in file order, each only if it
   * is the newest version of its key (as replay decides after a restart); a tombstone stays as an entry.
   */
  private applyDurable(placed: Placed[]): void {
    for (const p of placed) {
      const m = p.record.meta;
      const i = this.index.find(m.key);
      // Older than the entry, or the same version again (two copies of one write raced past the early check):
      // not current. The same version does replace a damaged record: that is a restore.
      const order = i >= 0 ? this.index.compareWithEntry(i, m.version) : 1;
      if (order < 0 || (order === 0 && !this.index.isDamaged(i))) {
        p.record.superseded = { version: this.index.versionOf(i), deleted: this.index.isTombstone(i) };
      } else {
        if (i >= 0) this.unaccount(i);
        const value = {
          volume: p.volume.id,
          offset: p.offset,
          size: m.size,
          bodyCrc: m.bodyCrc,
          version: m.version,
          contentType: m.contentType.length > 0 ? m.contentType.toString("utf8") : undefined,
          headers: m.headers.length > 0 ? m.headers : undefined,
          tombstone: m.tombstone,
        };
        if (i >= 0) this.index.update(i, value);
        else this.index.insert(m.key, value);
        p.volume.liveBytes += p.length;
      }
      this.bytesSinceCheckpoint += p.length;
      this.recordsSinceCheckpoint++;
    }
    // Small records make a long tail cheap in bytes but slow to replay: bound the records too (to half the
    // index, at least 100k, so a checkpoint costs about as much to write as the records it saves replaying).
    const recordLimit = Math.max(100_000, this.index.count / 2);
    const due =
      this.bytesSinceCheckpoint >= this.options.checkpointEveryBytes ||
      this.recordsSinceCheckpoint >= recordLimit;
    if (due && !this.checkpointing) {
      this.checkpoint().catch((err: unknown) => this.options.log.warn({ err }, "index checkpoint failed"));
    }
    this.compactor.poke();
  }

  /** Takes an entry's record out of its volume's live bytes (it is being superseded or moved). */
  unaccount(i: number): void {
    const v = this.volumes.get(this.index.volumeOf(i));
    if (v) v.liveBytes -= this.recordLengthOf(i);
  }

  recordLengthOf(i: number): number {
    return recordLength(this.index.keyBytesOf(i), this.index.metaBytesOf(i), this.index.sizeOf(i));
  }

  private async rollover(): Promise<Volume> {
    const next = await Volume.create(join(this.options.dir, "volumes"), {
      id: this.active.id + 1,
      salt: randomInt(0x1_0000_0000 - 1),
      compactedAt: 0,
    });
    this.volumes.set(next.id, next);
    this.active = next;
    return next;
  }

  expireTombstones(): number {
    const before = Date.now() - this.options.tombstoneGraceMs;
    const expired: Uint8Array[] = [];
    this.index.forEach((i) => {
      if (this.index.isTombstone(i) && versionTimeMs(this.index.versionOf(i)) < before) {
        expired.push(this.index.keyOf(i).slice());
      }
    });
    for (const k of expired) {
      const i = this.index.find(k);
      if (i < 0) continue;
      this.unaccount(i);
      this.index.remove(k);
    }
    if (expired.length > 0) {
      this.options.log.info({ tombstones: expired.length }, "deletes past their grace period forgotten");
      this.compactor.poke();
    }
    return expired.length;
  }

  private infoOf(key: string, i: number): ObjectInfo {
    const version = this.index.versionOf(i);
    const info: ObjectInfo = {
      key,
      size: this.index.sizeOf(i),
      bodyCrc: this.index.crcOf(i),
      writeTime: versionTimeMs(version),
      version,
      contentType: this.index.contentTypeOf(i),
    };
    // On the read path: no spread of an empty object per lookup for the rare damaged record.
    if (this.index.isDamaged(i)) info.damaged = true;
    const headers = this.index.headersOf(i);
    if (headers !== undefined) info.headers = decodeStoredHeaders(headers);
    return info;
  }

  private countMismatch(key: string, volume: Volume, offset: number): void {
    this.quarantine(keyBytes(key), volume.id, offset, "a read");
  }

  /**
   * A record found damaged (by a read or the scrub): counted, logged once, and, if it is the key's current
   * record, marked damaged in the index: never served again, and its digest bucket now differs from the
   * replicas', so repair restores it.
   */
  quarantine(k: Uint8Array, volume: number, offset: number, foundBy: string): void {
    const i = this.index.find(k);
    if (i < 0 || this.index.volumeOf(i) !== volume || this.index.offsetOf(i) !== offset) return;
    if (this.index.isDamaged(i)) return;
    this.index.markDamaged(i);
    this.quarantined.save();
    this.checksumErrors++;
    this.options.log.error(
      { key: Buffer.from(k).toString("utf8"), volume, offset, foundBy },
      "stored record failed its checksum; quarantined until repair restores it",
    );
  }

  digest(): StoreDigest {
    return { buckets: DIGEST_BUCKETS, entries: this.index.count, hashes: this.index.digest.slice() };
  }

  listBucket(
    bucket: number,
    after: string | undefined,
    limit: number,
  ): { entries: ListedEntry[]; more: boolean } {
    return listBucket(this.index, bucket, after, limit);
  }

  listKeys(
    prefix: string,
    after: string | undefined,
    limit: number,
    bare = false,
  ): Promise<{ entries: KeyEntry[]; more: boolean }> {
    return listKeys(this.index, { prefix, after, limit, bare }, this.options.keyOrderWaitMs);
  }

  private track<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(shuttingDown());
    const pending = fn(); // a synchronous throw counts nothing
    this.inflight++;
    return pending.then(
      (value) => {
        this.untrack();
        return value;
      },
      (err: unknown) => {
        this.untrack();
        throw diskError(err);
      },
    );
  }

  private untrack(): void {
    if (--this.inflight === 0) this.settled?.();
  }
}

/**
 * `[start, end)` of a body; the whole body is the buffer itself, not a view, so a cached record is the same
 * object on every read (the node keys its answer headers on it).
 */
function part(body: Buffer, start: number, end: number): Buffer {
  return start === 0 && end === body.length ? body : body.subarray(start, end);
}

function staleVersion(current: Version, deleted: boolean): BackpackError {
  return new BackpackError(
    "STALE_VERSION",
    `the store holds version ${formatVersion(current)}${deleted ? " (a delete)" : ""}, as new or newer`,
    { details: { current: formatVersion(current), deleted } },
  );
}

function shuttingDown(): BackpackError {
  return new BackpackError("SHUTTING_DOWN", "the store is closing");
}

function keyBytes(key: string): Buffer {
  const k = Buffer.from(key, "utf8");
  if (k.length === 0 || k.length > MAX_KEY_BYTES) {
    throw new BackpackError("INVALID_KEY", `key must be 1-${MAX_KEY_BYTES} bytes of UTF-8`);
  }
  return k;
}

export { RECORD_HEADER_BYTES };
