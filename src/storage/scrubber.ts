import { readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../common/logger.js";
import type { IndexTable } from "./index-table.js";
import { VOLUME_HEADER_BYTES } from "./record.js";
import type { MaintenanceTurnWait } from "./types.js";
import type { Volume } from "./volume.js";
import { scanVolume } from "./volume-scan.js";

export interface ScrubHost {
  readonly index: IndexTable;
  readonly volumes: Map<number, Volume>;
  /** A record failed its checksum: quarantine it if it is its key's current record. */
  quarantine(key: Uint8Array, volume: number, offset: number, foundBy: string): void;
}

export interface ScrubOptions {
  dir: string;
  /** Bytes verified per second at most; 0 turns the scrub off. */
  bytesPerSec: number;
  /** Time from the start of one pass to the start of the next, at least. */
  everyMs: number;
  /** Awaited before each slice: the node's turn at background work (see `StoreOptions.turn`). */
  turn: MaintenanceTurnWait;
  log: Logger;
}

export interface ScrubStats {
  /** Bytes per second the scrub may read (0: off). */
  rateBytesPerSec: number;
  passesCompleted: number;
  lastPassCompletedAt: number | undefined;
  /** Bytes and records verified since the node started. */
  bytesVerified: number;
  recordsVerified: number;
  /** Damaged records found (and quarantined) since the node started. */
  damagedFound: number;
  /** The pass under way: where it is, and how far through the volumes' bytes. */
  current: { volume: number; offset: number; doneBytes: number; totalBytes: number } | undefined;
}

/** Where a pass stands, saved so that a restart resumes there. */
interface Position {
  volume: number;
  salt: number;
  offset: number;
  startedAt: number;
}

const STATE_FILE = "scrub.json";
/** The position is saved at most this often. */
const SAVE_EVERY_MS = 5_000;
/** Reads are paced in slices of this much time, so that a burst never takes the disk for long. */
const PACE_MS = 100;

/**
 * Verifies every stored record's checksum in the background, volume by volume in file order, at most
 * `bytesPerSec`. A record that fails is quarantined (never served; its replicas' digests now differ, so repair
 * restores it). The position is saved in `scrub.json` and a restart resumes the pass there (a volume compacted
 * since is started again from its beginning: its salt changed). One pass starts at most every `everyMs`; a
 * restart begins at once.
 */
export class Scrubber {
  private running: Promise<void> | undefined;
  private readonly abort = new AbortController();
  private position: Position | undefined;
  private passesCompleted = 0;
  private lastPassCompletedAt: number | undefined;
  private bytesVerified = 0;
  private recordsVerified = 0;
  private damagedFound = 0;
  private doneBytes = 0;
  private totalBytes = 0;
  private savedAt = 0;

  constructor(
    private readonly host: ScrubHost,
    private readonly options: ScrubOptions,
  ) {}

  start(): void {
    if (this.running || this.options.bytesPerSec <= 0) return;
    this.running = this.loop().catch((err: unknown) => {
      if (!this.abort.signal.aborted) this.options.log.error({ err }, "the scrub stopped");
    });
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
    if (this.position) await this.save().catch(() => undefined);
  }

  stats(): ScrubStats {
    const p = this.position;
    return {
      rateBytesPerSec: this.options.bytesPerSec,
      passesCompleted: this.passesCompleted,
      lastPassCompletedAt: this.lastPassCompletedAt,
      bytesVerified: this.bytesVerified,
      recordsVerified: this.recordsVerified,
      damagedFound: this.damagedFound,
      current: p && {
        volume: p.volume,
        offset: p.offset,
        doneBytes: this.doneBytes,
        totalBytes: this.totalBytes,
      },
    };
  }

  private async loop(): Promise<void> {
    this.position = await this.load();
    // A restart begins (or resumes) a pass at once: it starts now, whatever start the last run planned.
    if (this.position && this.position.startedAt > Date.now()) this.position.startedAt = Date.now();
    const signal = this.abort.signal;
    for (;;) {
      const pos = (this.position ??= { volume: 0, salt: 0, offset: 0, startedAt: Date.now() });
      await this.pass(pos, signal);
      if (signal.aborted) return;
      this.passesCompleted++;
      this.lastPassCompletedAt = Date.now();
      this.options.log.info(
        { passes: this.passesCompleted, damagedFound: this.damagedFound, ms: Date.now() - pos.startedAt },
        "scrub pass complete",
      );
      const nextAt = pos.startedAt + this.options.everyMs;
      this.position = { volume: 0, salt: 0, offset: 0, startedAt: Math.max(Date.now(), nextAt) };
      await this.save();
      this.position = undefined;
      await sleep(Math.max(0, nextAt - Date.now()), undefined, { signal }).catch(() => undefined);
      if (signal.aborted) return;
      this.position = { volume: 0, salt: 0, offset: 0, startedAt: Date.now() };
    }
  }

  /** Verifies the volumes from `pos` on; returns when every volume is done (or the scrub stops). */
  private async pass(pos: Position, signal: AbortSignal): Promise<void> {
    const ids = [...this.host.volumes.keys()].sort((a, b) => a - b);
    this.totalBytes = ids.reduce((n, id) => n + (this.host.volumes.get(id)?.size ?? 0), 0);
    this.doneBytes = ids
      .filter((id) => id < pos.volume)
      .reduce((n, id) => n + (this.host.volumes.get(id)?.size ?? 0), 0);
    for (const id of ids.filter((i) => i >= pos.volume)) {
      // The turn first, the volume after it: compaction may replace or remove a volume meanwhile (and close
      // the file of the one it replaced).
      await this.options.turn(signal).catch(() => undefined);
      const v = this.host.volumes.get(id);
      if (!v || signal.aborted) continue;
      const resume = pos.volume === id && pos.salt === v.salt && pos.offset > VOLUME_HEADER_BYTES;
      const from = resume ? pos.offset : VOLUME_HEADER_BYTES;
      Object.assign(pos, { volume: id, salt: v.salt, offset: from });
      await this.scrubVolume(v, from, pos, signal);
      if (signal.aborted) return;
      pos.volume = id + 1;
      pos.offset = VOLUME_HEADER_BYTES;
    }
  }

  private async scrubVolume(v: Volume, from: number, pos: Position, signal: AbortSignal): Promise<void> {
    const release = v.file.acquire();
    const end = v.size; // records appended later are checked by the next pass
    let sliceStart = performance.now();
    let sliceBytes = 0;
    const budget = (this.options.bytesPerSec * PACE_MS) / 1000;
    try {
      const result = await scanVolume(v.file.handle, v.salt, from, end, async (r) => {
        if (signal.aborted) throw new Error("scrub stopped");
        this.recordsVerified++;
        this.bytesVerified += r.header.length;
        this.doneBytes += r.header.length;
        if (!r.intact) {
          this.damagedFound++;
          this.host.quarantine(r.key, v.id, r.offset, "the scrub");
        }
        pos.offset = r.offset + r.header.length;
        sliceBytes += r.header.length;
        if (sliceBytes >= budget) {
          await this.options.turn(signal).catch(() => undefined);
          // Paced: this slice's bytes take at least their share of a second.
          const wait = (sliceBytes / this.options.bytesPerSec) * 1000 - (performance.now() - sliceStart);
          if (wait > 0) await sleep(wait, undefined, { signal }).catch(() => undefined);
          sliceStart = performance.now();
          sliceBytes = 0;
        }
        if (Date.now() - this.savedAt > SAVE_EVERY_MS) await this.save();
      });
      // Bytes that are not a verifiable header: any current record said to lie there is damaged.
      for (const s of result.truncateAt === undefined
        ? result.skipped
        : [...result.skipped, { from: result.truncateAt, to: end }]) {
        this.host.index.forEach((i) => {
          const at = this.host.index.offsetOf(i);
          if (this.host.index.volumeOf(i) === v.id && at >= s.from && at < s.to) {
            this.damagedFound++;
            this.host.quarantine(this.host.index.keyOf(i), v.id, at, "the scrub");
          }
        });
      }
    } catch (err) {
      if (!signal.aborted) throw err;
    } finally {
      release();
    }
  }

  private async load(): Promise<Position | undefined> {
    try {
      const p = JSON.parse(await readFile(join(this.options.dir, STATE_FILE), "utf8")) as Partial<Position>;
      if ([p.volume, p.salt, p.offset, p.startedAt].every((n) => typeof n === "number")) return p as Position;
    } catch {
      // No saved position (first start) or an unreadable one: start a pass from the beginning.
    }
    return undefined;
  }

  /** Saves the position (a hint: losing it only repeats some verification), via a rename. */
  private async save(): Promise<void> {
    this.savedAt = Date.now();
    if (!this.position) return;
    const path = join(this.options.dir, STATE_FILE);
    await writeFile(`${path}.tmp`, JSON.stringify(this.position));
    await rename(`${path}.tmp`, path);
  }
}
