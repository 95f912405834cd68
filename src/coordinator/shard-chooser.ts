import { BackpackError } from "../common/errors.js";
import type { ShardInfo } from "../cluster/types.js";

/** A number in [0, 1), injected so that tests and simulations are deterministic. */
export type Random = () => number;

export interface ShardCandidate {
  shard: ShardInfo;
  /** Bytes this shard can still take, after usage not yet flushed and uploads in flight. */
  free: number;
}

/**
 * Picks the shard for an upload of `size` bytes: among enabled shards with room for it, at random, weighted by
 * free bytes.
 *
 * The original weighted by free *ratio* (free / capacity). With that weight a nearly empty 100 GB shard and a
 * nearly empty 10 TB shard get the same share of uploads, so small shards fill first and a large shard added
 * later stays mostly idle. Weighting by free bytes makes each shard's expected intake proportional to its free
 * space, so free space shrinks at the same relative rate everywhere and all shards fill up together; a new
 * shard immediately takes its fair share.
 *
 * Throws NO_WRITABLE_SHARDS when no shard is enabled (the original's `No writable shards found!`) and NO_SPACE
 * when some are enabled but none has room for `size` bytes.
 */
export function chooseShard(candidates: readonly ShardCandidate[], size: number, random: Random): ShardInfo {
  const writable = candidates.filter((c) => c.shard.enabled && c.shard.servers.length > 0);
  if (writable.length === 0) {
    throw new BackpackError("NO_WRITABLE_SHARDS", "No writable shards found!");
  }
  // A zero-byte upload still needs a shard that is not already full.
  const fitting = writable.filter((c) => c.free >= size && c.free > 0);
  if (fitting.length === 0) {
    const best = Math.max(...writable.map((c) => Math.max(0, c.free)));
    throw new BackpackError(
      "NO_SPACE",
      `no writable shard has room for ${size} bytes (the most free space on one shard is ${best} bytes)`,
      { details: { size, max_free: best } },
    );
  }
  const total = fitting.reduce((sum, c) => sum + c.free, 0);
  let point = clampUnit(random()) * total;
  for (const c of fitting) {
    point -= c.free;
    if (point < 0) return c.shard;
  }
  // Floating-point rounding can leave `point` at exactly 0 after the last shard.
  return (fitting[fitting.length - 1] as ShardCandidate).shard;
}

/**
 * Orders a shard's servers for an attempt: healthy ones first in random order (spreads load over replicas),
 * then the ones recently seen failing, also shuffled. Nothing is dropped: a suspect node is still tried last.
 */
export function orderServers(
  servers: readonly string[],
  isSuspect: (serverId: string) => boolean,
  random: Random,
): string[] {
  const healthy = servers.filter((s) => !isSuspect(s));
  const suspect = servers.filter((s) => isSuspect(s));
  return [...shuffle(healthy, random), ...shuffle(suspect, random)];
}

/** Fisher-Yates on a copy. */
export function shuffle<T>(items: readonly T[], random: Random): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(clampUnit(random()) * (i + 1));
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

function clampUnit(x: number): number {
  // A bad random source must not pick outside the array.
  if (!Number.isFinite(x) || x < 0) return 0;
  return x >= 1 ? 1 - Number.EPSILON : x;
}
