import type { ListEntry } from "../client/coordinator-client.js";
import type { NodeKeyEntry } from "../client/node-client.js";
import { httpDate } from "../common/http.js";
import { compareKeys } from "../common/key.js";
import { compareVersions, parseVersion, versionTimeMs, type Version } from "../common/version.js";

const OCTET_STREAM = "application/octet-stream";

/** One node's page of keys (`GET /_backpack/keys`) from one round of a listing, and the shard it serves. */
export interface SourcePage {
  shard: string;
  entries: readonly NodeKeyEntry[];
  /** The node has further keys after its last entry. */
  more: boolean;
}

/**
 * Merges one round of pages, every one asked from the same cursor. Up to `bound` (the smallest last key of
 * the pages that have more) every source has said everything it holds, so the merge is final there: for each
 * key the newest version of any replica of any shard wins, and a delete (tombstone) that wins hides the key.
 * Keys past the bound are left for the next round, which starts at the bound. Pure: no I/O.
 */
export function mergeRound(pages: readonly SourcePage[]): {
  /** The live keys up to the bound, in key order (byte order of their UTF-8). */
  entries: ListEntry[];
  /** Where the round is final; undefined when every source is exhausted (the listing ends here). */
  bound: string | undefined;
} {
  let bound: string | undefined;
  for (const p of pages) {
    const last = p.entries[p.entries.length - 1];
    if (p.more && last !== undefined && (bound === undefined || compareKeys(last.key, bound) < 0)) {
      bound = last.key;
    }
  }
  const newest = new Map<string, { entry: NodeKeyEntry; version: Version; shard: string }>();
  for (const p of pages) {
    for (const entry of p.entries) {
      if (bound !== undefined && compareKeys(entry.key, bound) > 0) break;
      const version = parseVersion(entry.version);
      if (version === undefined) continue;
      const held = newest.get(entry.key);
      if (held === undefined || compareVersions(version, held.version) > 0) {
        newest.set(entry.key, { entry, version, shard: p.shard });
      }
    }
  }
  const entries: ListEntry[] = [];
  for (const { entry, version, shard } of newest.values()) {
    if (entry.deleted) continue;
    entries.push({
      key: entry.key,
      shard,
      size: entry.size,
      version: entry.version,
      lastModified: httpDate(versionTimeMs(version)),
      contentType: entry.contentType ?? OCTET_STREAM,
      ...(entry.headers ? { headers: entry.headers } : {}),
    });
  }
  entries.sort((a, b) => compareKeys(a.key, b.key));
  return { entries, bound };
}
