import { formatChecksum } from "../common/checksum.js";
import { compareVersions, formatVersion } from "../common/version.js";
import type { ReplicaEntry } from "../client/node-client.js";
import type { Copier } from "./copier.js";
import type { ShardReport } from "./repair-report.js";

export interface RepairPlanItem {
  key: string;
  target: string;
  kind: "copy" | "delete" | "restore";
  version: string;
}

export interface PlannedRepair {
  plan: RepairPlanItem;
  size: number;
  /** The key has fewer verified copies than the shard has servers. */
  underReplicated: boolean;
  task(shard: string): Parameters<Copier["run"]>[0];
}

/** Buckets whose digests are not the same on every server. */
export function differingBuckets(digests: Uint32Array[]): number[] {
  const out: number[] = [];
  const first = digests[0];
  if (!first) return out;
  for (let b = 0; b < first.length / 2; b++) {
    for (const d of digests) {
      if (d[2 * b] !== first[2 * b] || d[2 * b + 1] !== first[2 * b + 1]) {
        out.push(b);
        break;
      }
    }
  }
  return out;
}

/**
 * What to repair in one bucket, given what each server holds of each key: the newest version held intact
 * anywhere wins; every server without it gets it. Pure. Counts under-replicated files and unrepairable keys
 * into `report`.
 */
export function planBucket(
  held: Map<string, Map<string, ReplicaEntry>>,
  servers: string[],
  replicas: number,
  report: Pick<ShardReport, "underReplicated" | "unrepairable">,
): PlannedRepair[] {
  const out: PlannedRepair[] = [];
  for (const [key, byServer] of held) {
    let winner: ReplicaEntry | undefined;
    for (const e of byServer.values()) {
      if (!e.damaged && (!winner || compareVersions(e.version, winner.version) > 0)) winner = e;
    }
    const newestAny = [...byServer.values()].reduce<ReplicaEntry | undefined>(
      (a, e) => (!a || compareVersions(e.version, a.version) > 0 ? e : a),
      undefined,
    );
    if (!winner || (newestAny && compareVersions(newestAny.version, winner.version) > 0)) {
      // The newest version is damaged wherever it is: no good copy to restore it from.
      report.unrepairable.push(key);
      continue;
    }
    const w = winner;
    const holders = servers.filter((s) => {
      const e = byServer.get(s);
      return e !== undefined && !e.damaged && compareVersions(e.version, w.version) === 0;
    });
    const under = !w.deleted && holders.length < replicas;
    if (under) report.underReplicated++;
    for (const target of servers) {
      if (holders.includes(target)) continue;
      const mine = byServer.get(target);
      // A delete goes also to a server that never had the file: a late copy of it could still arrive there.
      const kind: RepairPlanItem["kind"] = w.deleted
        ? "delete"
        : mine?.damaged && compareVersions(mine.version, w.version) === 0
          ? "restore"
          : "copy";
      const version = formatVersion(w.version);
      out.push({
        plan: { key, target, kind, version },
        size: w.deleted ? 0 : w.size,
        underReplicated: under,
        task: (shard) => ({
          op: w.deleted ? "delete" : "copy",
          shard,
          sources: w.deleted ? [] : holders,
          target,
          key,
          crc: w.deleted ? "00000000" : formatChecksum(w.crc),
          size: w.deleted ? 0 : w.size,
          createdAt: Date.now(),
          version,
        }),
      });
    }
  }
  return out;
}
