import { randomInt } from "node:crypto";
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { BackpackError } from "../common/errors.js";
import type { Logger } from "../common/logger.js";
import { compareVersions } from "../common/version.js";
import { readCheckpoint, type CoveredVolume } from "./checkpoint.js";
import { lockDir } from "./dir-lock.js";
import { fsyncDir } from "./file-io.js";
import { IndexTable } from "./index-table.js";
import { recordLength, splitMeta, VOLUME_HEADER_BYTES } from "./record.js";
import { Volume, volumeIdOf } from "./volume.js";
import { scanVolume, type ScannedRecord } from "./volume-scan.js";

export interface Recovered {
  index: IndexTable;
  volumes: Map<number, Volume>;
  release: () => Promise<void>;
}

/**
 * Brings a data dir to a serving state: takes the dir's lock, clears temp files and unfinished compactions,
 * loads the checkpoint when it matches the volumes, replays every record after it in write order (volume id,
 * then offset; of a key's records the newest version wins), and cuts torn tails off.
 */
export async function recover(opts: { dir: string; log: Logger }): Promise<Recovered> {
  const started = performance.now();
  const { dir, log } = opts;
  const volDir = join(dir, "volumes");
  // Nothing else before the lock: a start that loses it must not touch what the holder is setting up.
  await mkdir(volDir, { recursive: true });
  const release = await lockDir(dir, { log });
  try {
    await rm(join(dir, "tmp"), { recursive: true, force: true });
    await mkdir(join(dir, "tmp"));
    const volumes = await openVolumes(volDir, log);
    const checkpoint = await readCheckpoint(dir, log);
    let usable = checkpoint !== undefined && matches(checkpoint.volumes, volumes);
    if (checkpoint && !usable) log.warn("index checkpoint does not match the volumes; rebuilding the index");
    let replayed = await replayVolumes(volumes, usable ? checkpoint : undefined, log);
    if (usable && dangling(replayed.index, volumes) > 0) {
      // Entries into a volume that compaction removed must all have been superseded by the replayed tail.
      log.warn("index checkpoint points into missing volumes; rebuilding the index");
      usable = false;
      replayed = await replayVolumes(volumes, undefined, log);
    }
    const { index, scannedBytes } = replayed;
    index.rebuildBuckets();
    index.forEach((i) => {
      const v = volumes.get(index.volumeOf(i));
      if (v) v.liveBytes += recordLength(index.keyBytesOf(i), index.metaBytesOf(i), index.sizeOf(i));
    });
    if (volumes.size === 0) {
      const first = await Volume.create(volDir, { id: 1, salt: randomInt(0xffffffff), compactedAt: 0 });
      volumes.set(1, first);
    }
    log.info(
      {
        objects: index.count - index.tombstones,
        tombstones: index.tombstones,
        volumes: volumes.size,
        checkpoint: usable,
        scannedBytes,
        ms: Math.round(performance.now() - started),
      },
      "store opened",
    );
    return { index, volumes, release };
  } catch (err) {
    await release();
    throw err;
  }
}

/** Replays every record after the checkpoint (all of them without one) into its index, in write order. */
async function replayVolumes(
  volumes: Map<number, Volume>,
  checkpoint: { index: IndexTable; volumes: CoveredVolume[] } | undefined,
  log: Logger,
): Promise<{ index: IndexTable; scannedBytes: number }> {
  const index = checkpoint?.index ?? new IndexTable(randomInt(0x7fffffff));
  // The digest buckets are built once the index is complete (a checkpoint does not hold them).
  index.tracking = false;
  const covered = new Map((checkpoint?.volumes ?? []).map((c) => [c.id, c.covered]));
  let scannedBytes = 0;
  for (const v of [...volumes.values()].sort((a, b) => a.id - b.id)) {
    const from = covered.get(v.id) ?? VOLUME_HEADER_BYTES;
    if (from >= v.size) continue;
    scannedBytes += v.size - from;
    const result = await scanVolume(v.file.handle, v.salt, from, v.size, (r) => replay(index, v, r, log));
    for (const s of result.skipped) {
      log.error({ volume: v.id, from: s.from, to: s.to }, "skipped damaged bytes in a volume");
    }
    if (result.truncateAt !== undefined) {
      log.warn(
        { volume: v.id, at: result.truncateAt, bytes: v.size - result.truncateAt },
        "cut a torn or damaged tail off a volume",
      );
      await v.file.handle.truncate(result.truncateAt);
      await v.file.handle.datasync();
      v.size = result.truncateAt;
    }
  }
  return { index, scannedBytes };
}

function replay(index: IndexTable, v: Volume, r: ScannedRecord, log: Logger): void {
  if (!r.intact)
    log.error({ volume: v.id, offset: r.offset }, "damaged record quarantined until repair restores it");
  const i = index.find(r.key);
  // The newest version wins whatever the file order; of two equal versions the later record (a format-1 key
  // written twice in one millisecond).
  if (i >= 0 && compareVersions(r.header.version, index.versionOf(i)) < 0) return;
  const { contentType, headers } = splitMeta(r.meta, r.header.hasHeaders);
  const value = {
    volume: v.id,
    offset: r.offset,
    size: r.header.size,
    bodyCrc: r.header.bodyCrc,
    version: r.header.version,
    contentType: contentType.length > 0 ? contentType.toString("utf8") : undefined,
    headers: headers.length > 0 ? headers : undefined,
    tombstone: r.header.tombstone,
  };
  const at = i >= 0 ? i : index.insert(r.key, value);
  if (i >= 0) index.update(i, value);
  // Quarantined at once: never served, and its replicas' digests differ, so repair restores it.
  if (!r.intact) index.markDamaged(at);
}

function dangling(index: IndexTable, volumes: Map<number, Volume>): number {
  let n = 0;
  index.forEach((i) => {
    if (!volumes.has(index.volumeOf(i))) n++;
  });
  return n;
}

/** A checkpoint is usable only if every volume it covers is still the same file (same salt) and long enough. */
function matches(covered: CoveredVolume[], volumes: Map<number, Volume>): boolean {
  const newest = Math.max(0, ...covered.map((c) => c.id));
  for (const c of covered) {
    const v = volumes.get(c.id);
    // A missing volume was emptied and removed by compaction (checked after replay: nothing may point there).
    if (v && (v.salt !== c.salt || v.size < c.covered)) return false;
  }
  // A volume the checkpoint does not know must be newer than all it knows, or replay order would break.
  for (const id of volumes.keys()) if (id < newest && !covered.some((c) => c.id === id)) return false;
  return true;
}

async function openVolumes(volDir: string, log: Logger): Promise<Map<number, Volume>> {
  const names = await readdir(volDir);
  for (const name of names.filter((n) => n.endsWith(".compact"))) {
    // An unfinished compaction: the volume it was rewriting is still complete and in place.
    await rm(join(volDir, name), { force: true });
  }
  const ids = names
    .map(volumeIdOf)
    .filter((id): id is number => id !== undefined)
    .sort((a, b) => a - b);
  const volumes = new Map<number, Volume>();
  for (const id of ids) {
    const path = join(volDir, `${String(id).padStart(8, "0")}.vol`);
    try {
      const v = await Volume.open(path);
      if (v.id !== id) throw new BackpackError("INTERNAL", `${path} holds volume ${v.id}`);
      volumes.set(id, v);
    } catch (err) {
      const size = (await stat(path)).size;
      if (id === ids[ids.length - 1] && size <= VOLUME_HEADER_BYTES) {
        // Created by a rollover that crashed before the header was durable: it never held a record.
        log.warn({ path }, "removing a volume whose creation did not finish");
        await rm(path);
        await fsyncDir(volDir);
        continue;
      }
      for (const v of volumes.values()) await v.file.close();
      throw err;
    }
  }
  return volumes;
}
