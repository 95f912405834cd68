import { BackpackError } from "../common/errors.js";
import { decodeStoredHeaders } from "../common/stored-headers.js";
import { withTimeout } from "../common/timeout.js";
import type { IndexTable } from "./index-table.js";
import type { SortedKeys } from "./sorted-keys.js";
import type { KeyEntry, ListedEntry } from "./types.js";

const utf8 = new TextDecoder();

/** A digest bucket's entries in key order, after `after` (exclusive), at most `limit` (what repair compares). */
export function listBucket(
  index: IndexTable,
  bucket: number,
  after: string | undefined,
  limit: number,
): { entries: ListedEntry[]; more: boolean } {
  const from = after === undefined ? undefined : Buffer.from(after, "utf8");
  const picked = index
    .bucketEntries(bucket)
    .map((i) => ({ i, key: Buffer.from(index.keyOf(i)) }))
    .filter((e) => from === undefined || Buffer.compare(e.key, from) > 0)
    .sort((a, b) => Buffer.compare(a.key, b.key));
  const entries = picked.slice(0, limit).map(({ i, key }) => ({
    key: key.toString("utf8"),
    version: index.versionOf(i),
    crc: index.crcOf(i),
    size: index.sizeOf(i),
    deleted: index.isTombstone(i),
    damaged: index.isDamaged(i),
  }));
  return { entries, more: picked.length > limit };
}

/**
 * The keys starting with `prefix`, strictly after `after`, in key order, at most `limit` (the node's
 * `GET /_backpack/keys`), from the index's key order: no I/O, no sort; `bare` leaves out content types and
 * stored headers. The first listing starts building the order (in slices: the node keeps serving) and waits up
 * to `waitMs` for it, then is answered OVERLOADED (retry shortly) until it is built.
 */
export async function listKeys(
  index: IndexTable,
  { prefix, after, limit, bare }: { prefix: string; after: string | undefined; limit: number; bare: boolean },
  waitMs: number,
): Promise<{ entries: KeyEntry[]; more: boolean }> {
  const order = index.builtKeyOrder ?? (await keyOrder(index, waitMs));
  const p = Buffer.from(prefix, "utf8");
  const a = after === undefined ? undefined : Buffer.from(after, "utf8");
  // Start past `after` when it sorts at or past the prefix, else at the prefix itself.
  const fromAfter = a !== undefined && Buffer.compare(a, p) >= 0;
  const entries: KeyEntry[] = [];
  let more = false;
  for (const i of order.from(fromAfter ? a : p, !fromAfter)) {
    const key = index.keyOf(i);
    if (key.length < p.length || Buffer.compare(key.subarray(0, p.length), p) !== 0) break;
    if (entries.length === limit) {
      more = true;
      break;
    }
    const entry: KeyEntry = {
      key: utf8.decode(key),
      version: index.versionOf(i),
      crc: index.crcOf(i),
      size: index.sizeOf(i),
      deleted: index.isTombstone(i),
      damaged: index.isDamaged(i),
      contentType: bare ? undefined : index.contentTypeOf(i),
    };
    const headers = bare ? undefined : index.headersOf(i);
    if (headers !== undefined) entry.headers = decodeStoredHeaders(headers);
    entries.push(entry);
  }
  return { entries, more };
}

function keyOrder(index: IndexTable, waitMs: number): Promise<SortedKeys> {
  const building = index.sorted(() => new Promise((resolve) => setImmediate(resolve)));
  const refusal = (): BackpackError =>
    new BackpackError(
      "OVERLOADED",
      "the node is building its key order (its first listing since it started); retry shortly",
      { retryAfterSec: 1 },
    );
  return withTimeout(building, waitMs, "the key order", refusal);
}
