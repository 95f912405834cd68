/**
 * Where an object lives: a rendezvous (highest-random-weight) hash of its native name over its bucket's shard
 * list. Every front computes the same order from the name and the map alone; adding or removing one shard
 * of n moves only the names whose winner it is or becomes (about 1/n). Pure.
 */
import { createHash } from "node:crypto";

function score(shard: string, name: string): string {
  return createHash("md5").update(shard).update("\n").update(name).digest("hex");
}

/** The bucket's shards in the order a name tries them: the first is its home, the rest its fallbacks. */
export function rankShards(name: string, shards: readonly string[]): string[] {
  return shards
    .map((shard) => ({ shard, score: score(shard, name) }))
    .sort((a, b) => (a.score < b.score ? 1 : a.score > b.score ? -1 : a.shard < b.shard ? -1 : 1))
    .map((s) => s.shard);
}

/** The home shard of a name (the first of `rankShards`, without sorting); undefined without shards. */
export function homeShard(name: string, shards: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = "";
  for (const shard of shards) {
    const s = score(shard, name);
    if (best === undefined || s > bestScore || (s === bestScore && shard < best)) {
      best = shard;
      bestScore = s;
    }
  }
  return best;
}
