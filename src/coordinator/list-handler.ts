import type { ServerResponse } from "node:http";
import type { ListEntry, ListPage } from "../client/coordinator-client.js";
import type { KeyPageSummary } from "../client/node-client.js";
import { BackpackError, toBackpackError } from "../common/errors.js";
import { sendJson } from "../common/http.js";
import { pageSummary } from "../common/page-summary.js";
import type { ClusterSnapshot } from "../cluster/types.js";
import type { CoordinatorContext } from "./context.js";
import { mergeRound, type SourcePage } from "./list-merge.js";

/** Entries in one page of `GET /_list`, at most (and by default). */
export const MAX_LIST_ENTRIES = 1000;

/**
 * `GET /_list?prefix=<p>&after=<k>&limit=<n>`: one page of the cluster's files in key order (byte order of
 * their UTF-8), merged across every shard and the live nodes of each; for each key the newest version wins and
 * a delete hides it (list-merge.ts). Every live node of a shard is asked (a file acknowledged is on every node
 * that was up, and at least the write quorum): one for its page, the others for its summary (askNodes); a
 * shard none of whose nodes answers makes the listing 503, never a page that silently lacks its files.
 */
export async function handleList(
  ctx: CoordinatorContext,
  res: ServerResponse,
  target: string,
): Promise<void> {
  const { prefix, after, limit } = listQuery(target);
  const snapshot = ctx.map.snapshot();
  const entries: ListEntry[] = [];
  let cursor = after;
  // The first round asks each node for about its shard's share of the page (keys spread over the shards);
  // a shard holding more of them, or deletes filling pages, take further rounds of whole pages from the
  // point where the merge is final. Halves what every node sends with two shards, a third with three.
  const shards = Object.values(snapshot.shards).filter((s) => s.servers.length > 0).length;
  let ask = Math.min(limit, Math.ceil((1.25 * limit) / Math.max(1, shards)) + 8);
  for (;;) {
    const { entries: merged, bound } = mergeRound(await askNodes(ctx, snapshot, prefix, cursor, ask));
    ask = limit;
    for (const e of merged) {
      if (entries.length === limit) return answer(res, entries, true);
      entries.push(e);
    }
    if (bound === undefined) return answer(res, entries, false);
    if (entries.length === limit) return answer(res, entries, true);
    // Deletes filled the nodes' pages: the next round starts where this one is final.
    cursor = bound;
  }
}

function answer(res: ServerResponse, entries: ListEntry[], truncated: boolean): void {
  const page: ListPage = { entries, truncated };
  sendJson(res, 200, page);
}

/** Which replica of a shard sends its whole page, in turn from one listing round to the next. */
let turn = 0;

/**
 * One page from every node of every shard, from `after`; throws UNAVAILABLE when a shard has no answer. Of a
 * shard's nodes one sends its page and the others its summary (count, last key, hash of keys, versions and
 * deletes); a node whose summary differs from that page, or every node when that one fails, is asked for its
 * page too. The merge is the same as of every node's page; replicas that agree cost one page.
 */
async function askNodes(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  prefix: string,
  after: string | undefined,
  limit: number,
): Promise<SourcePage[]> {
  const query = {
    prefix,
    ...(after !== undefined ? { after } : {}),
    limit,
    timeoutMs: ctx.config.nodeTimeoutMs,
  };
  const first = turn++;
  const shards = Object.values(snapshot.shards);
  const ask = <T>(serverId: string, call: (base: string) => Promise<T>): Promise<T | string> =>
    askNode(ctx, snapshot, serverId, call);
  const asked = shards.map(async (shard): Promise<(SourcePage | string)[]> => {
    // The live nodes: not reported dead by the ring, nor failing lately (a frozen node would hold the page up
    // for the node timeout); all of them when none is.
    const live = shard.servers.filter((s) => !ctx.health.isSuspect(s));
    const servers = live.length > 0 ? live : shard.servers;
    if (servers.length === 0) return [];
    const pageOf = (serverId: string): Promise<SourcePage | string> =>
      ask(serverId, async (base) => ({ shard: shard.id, ...(await ctx.nodes.listKeys(base, query)) }));
    const sender = servers[first % servers.length]!;
    const others = servers.filter((s) => s !== sender);
    const [page, ...summaries] = await Promise.all([
      pageOf(sender),
      ...others.map((s) => ask(s, (base) => ctx.nodes.listKeysSummary(base, query))),
    ]);
    // Hashed only when there is a summary to compare it with (a shard of one node has none).
    const summary = typeof page === "string" || others.length === 0 ? undefined : summaryOf(page);
    const answers: (SourcePage | string)[] = [page];
    const more: string[] = [];
    for (const [n, theirs] of summaries.entries()) {
      if (typeof theirs === "string") answers.push(theirs);
      else if (!sameSummary(summary, theirs)) more.push(others[n]!);
    }
    answers.push(...(await Promise.all(more.map(pageOf))));
    return answers;
  });
  const pages: SourcePage[] = [];
  for (const [n, answers] of (await Promise.all(asked)).entries()) {
    const shard = shards[n]!;
    const ok = answers.filter((a): a is SourcePage => typeof a !== "string");
    if (ok.length === 0 && shard.servers.length > 0) {
      const why = answers.filter((a): a is string => typeof a === "string");
      throw new BackpackError(
        "UNAVAILABLE",
        `cannot list: no server of shard ${shard.id} answered (${why.join("; ")})`,
        { retryAfterSec: 1, details: { shard_id: shard.id } },
      );
    }
    pages.push(...ok);
  }
  return pages;
}

/**
 * One request to a node: its answer, or why there is none. A failure counts against the node's health, but
 * not AWAY_TOO_LONG (healthy, just not to be merged) nor OVERLOADED (still building its key order).
 */
async function askNode<T>(
  ctx: CoordinatorContext,
  snapshot: ClusterSnapshot,
  serverId: string,
  call: (base: string) => Promise<T>,
): Promise<T | string> {
  const base = snapshot.servers[serverId]?.url;
  if (base === undefined) return `${serverId}: not in the servers map`;
  try {
    const answer = await call(base);
    ctx.health.recordSuccess(serverId);
    return answer;
  } catch (err) {
    const e = toBackpackError(err);
    if (e.code !== "AWAY_TOO_LONG" && e.code !== "OVERLOADED") ctx.health.recordFailure(serverId);
    return `${serverId}: ${e.message}`;
  }
}

/** The summary a node holding exactly what `page` lists would answer for it. */
function summaryOf(page: SourcePage): KeyPageSummary {
  return {
    more: page.more,
    count: page.entries.length,
    last: page.entries[page.entries.length - 1]?.key,
    summary: pageSummary(page.entries),
  };
}

function sameSummary(a: KeyPageSummary | undefined, b: KeyPageSummary): boolean {
  return (
    a !== undefined &&
    a.more === b.more &&
    a.count === b.count &&
    a.last === b.last &&
    a.summary === b.summary
  );
}

/** The query of `GET /_list`, checked: BAD_REQUEST names what is wrong. */
export function listQuery(target: string): { prefix: string; after: string | undefined; limit: number } {
  const q = target.indexOf("?");
  const params = new Map<string, string>();
  if (q !== -1) {
    for (const pair of target.slice(q + 1).split("&")) {
      if (pair === "") continue;
      const eq = pair.indexOf("=");
      const name = eq === -1 ? pair : pair.slice(0, eq);
      const raw = eq === -1 ? "" : pair.slice(eq + 1);
      if (!["prefix", "after", "limit"].includes(name)) {
        throw new BackpackError(
          "BAD_REQUEST",
          `unknown query parameter ${JSON.stringify(name)} (prefix, after, limit)`,
        );
      }
      if (params.has(name)) throw new BackpackError("BAD_REQUEST", `${name} is given twice`);
      try {
        params.set(name, decodeURIComponent(raw.replaceAll("+", " ")));
      } catch {
        throw new BackpackError("BAD_REQUEST", `${name} is not percent-encoded UTF-8`);
      }
    }
  }
  const limitText = params.get("limit");
  const limit = limitText === undefined ? MAX_LIST_ENTRIES : Number(limitText);
  if (limitText === "" || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_ENTRIES) {
    throw new BackpackError("BAD_REQUEST", `limit must be a whole number 1-${MAX_LIST_ENTRIES}`);
  }
  return { prefix: params.get("prefix") ?? "", after: params.get("after"), limit };
}
