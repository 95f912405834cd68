import { createHash } from "node:crypto";

/** What a page summary covers of an entry: its key, its version (as `X-Backpack-Version`), whether a delete. */
export interface SummarisedEntry {
  key: string;
  version: string;
  deleted?: boolean;
}

/**
 * The summary of a page of a node's keys (`GET /_backpack/keys?summary=1`): a 128-bit hash (32 hex digits) of
 * every entry's key, version and delete flag, in order. Two replicas whose pages from the same cursor have the
 * same count, last key and summary hold the same versions of the same keys there, so a listing merging them
 * needs only one of the two pages.
 */
export function pageSummary(entries: Iterable<SummarisedEntry>): string {
  // One string hashed at once: a page is a thousand entries, and an update per entry costs more than the hash.
  let text = "";
  for (const e of entries) text += `${e.key}\u0000${e.version}\u0000${e.deleted === true ? "d" : ""}\n`;
  return createHash("sha256").update(text, "utf8").digest("hex").slice(0, 32);
}
