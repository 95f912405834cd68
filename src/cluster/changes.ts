/**
 * Every change of the cluster map as a pure function: documents as read → documents to write. Both stores run
 * these under their own compare-and-set (ZooKeeper: versions in one multi-op; embedded: a file lock), so the
 * rules and the JSON they produce are the same for both.
 */
import { BackpackError } from "../common/errors.js";
import {
  decodeSnapshot,
  encodeQueue,
  isObject,
  encodeS3,
  QUEUE,
  S3,
  SERVERS_MAP,
  SETTINGS,
  SHARDS_MAP,
  shardSizeNode,
  type JsonObject,
  type RawState,
} from "./layout.js";
import {
  parseServerUrl,
  planAddShard,
  planSetShardEnabled,
  planSetShardServers,
  requireInitialized,
  sanitizeBytes,
  validateId,
  validateQueue,
} from "./rules.js";
import { applySettingsPatch, type RuntimeSettings, type SettingsPatch } from "./settings.js";
import type { AddShardResult, InitResult, QueueSettings, S3Edit } from "./types.js";

export interface Write {
  node: string;
  /** Written as JSON text. */
  value: JsonObject;
}

export interface Plan<R> {
  writes: Write[];
  result: R;
}

/** A change: `where` names the map in messages (`zk://.../backpack`). */
export type Change<R> = (state: RawState, where: string) => Plan<R>;

/** A document's object for rewriting; refuses to overwrite a document that is not a JSON object. */
function editable(state: RawState, node: string): JsonObject {
  const raw = state.get(node);
  if (raw === undefined) return {};
  if (!isObject(raw.data)) {
    throw new BackpackError(
      "CONFLICT",
      `${node} does not hold a JSON object (${JSON.stringify(raw.text.slice(0, 80))}); repair it by hand before changing the map`,
    );
  }
  return structuredClone(raw.data);
}

export function initChange(queue: QueueSettings): Change<InitResult> {
  const q = validateQueue(queue);
  return (state) => {
    const writes: Write[] = [];
    const created = { servers: false, shards: false, queue: false };
    if (!state.has(SERVERS_MAP)) {
      writes.push({ node: SERVERS_MAP, value: {} });
      created.servers = true;
    }
    if (!state.has(SHARDS_MAP)) {
      writes.push({ node: SHARDS_MAP, value: {} });
      created.shards = true;
    }
    if (!state.has(QUEUE)) {
      writes.push({ node: QUEUE, value: encodeQueue(q) });
      created.queue = true;
    }
    return { writes, result: { created } };
  };
}

export function addServerChange(id: string, url: string): Change<void> {
  validateId("server", id);
  const address = parseServerUrl(url);
  return (state, where) => {
    requireInitialized(decodeSnapshot(state), where);
    const map = editable(state, SERVERS_MAP);
    const previous = map[id];
    const entry: JsonObject = {
      ...(isObject(previous) ? previous : {}),
      host: address.host,
      port: String(address.port),
    };
    if (address.scheme === "https") entry.scheme = "https";
    else delete entry.scheme;
    if (JSON.stringify(previous) === JSON.stringify(entry)) return { writes: [], result: undefined };
    map[id] = entry;
    return { writes: [{ node: SERVERS_MAP, value: map }], result: undefined };
  };
}

export function addShardChange(
  id: string,
  servers: readonly string[],
  capacity: number,
): Change<AddShardResult> {
  return (state, where) => {
    const snapshot = decodeSnapshot(state);
    requireInitialized(snapshot, where);
    const plan = planAddShard(snapshot, id, servers, capacity);
    if (plan.kind === "noop") return { writes: [], result: { created: false } };
    const sizeNode = shardSizeNode(id);
    const size = state.has(sizeNode) && isObject(state.get(sizeNode)?.data) ? editable(state, sizeNode) : {};
    size.capacity = capacity;
    // A leftover size document (a shard removed by hand) keeps its count: its nodes may still hold data.
    size.current = sanitizeBytes(size.current);
    const writes: Write[] = [{ node: sizeNode, value: size }];
    if (plan.kind === "capacity")
      return { writes, result: { created: false, previousCapacity: plan.previous } };
    const map = editable(state, SHARDS_MAP);
    map[id] = { nodes: [...servers], read_only: true };
    writes.unshift({ node: SHARDS_MAP, value: map });
    return { writes, result: { created: true } };
  };
}

export function setShardServersChange(
  id: string,
  servers: readonly string[],
  force: boolean,
): Change<boolean> {
  return (state, where) => {
    const snapshot = decodeSnapshot(state);
    requireInitialized(snapshot, where);
    if (!planSetShardServers(snapshot, id, servers, force)) return { writes: [], result: false };
    const map = editable(state, SHARDS_MAP);
    const entry = isObject(map[id]) ? map[id] : {};
    map[id] = { ...entry, nodes: [...servers] };
    return { writes: [{ node: SHARDS_MAP, value: map }], result: true };
  };
}

export function setShardEnabledChange(id: string, enabled: boolean): Change<boolean> {
  return (state, where) => {
    const snapshot = decodeSnapshot(state);
    requireInitialized(snapshot, where);
    if (!planSetShardEnabled(snapshot, id, enabled)) return { writes: [], result: false };
    const map = editable(state, SHARDS_MAP);
    const entry: JsonObject = isObject(map[id]) ? { ...map[id] } : {};
    if (enabled) delete entry.read_only;
    else entry.read_only = true;
    map[id] = entry;
    return { writes: [{ node: SHARDS_MAP, value: map }], result: true };
  };
}

export function setQueueChange(queue: QueueSettings): Change<void> {
  const q = validateQueue(queue);
  return (state, where) => {
    requireInitialized(decodeSnapshot(state), where);
    const value = { ...editable(state, QUEUE), ...encodeQueue(q) };
    return { writes: [{ node: QUEUE, value }], result: undefined };
  };
}

/** The runtime settings one version up, with `patch` applied (fields this code does not know are kept). */
export function setSettingsChange(patch: SettingsPatch): Change<RuntimeSettings> {
  return (state, where) => {
    const snapshot = decodeSnapshot(state);
    requireInitialized(snapshot, where);
    const next = applySettingsPatch(snapshot.settings, patch);
    return { writes: [{ node: SETTINGS, value: { ...editable(state, SETTINGS), ...next } }], result: next };
  };
}

/** Runs an S3 edit on the map as read; writes the document only when the edit returns a new one. */
export function updateS3Change<R>(edit: S3Edit<R>): Change<R> {
  return (state, where) => {
    const snapshot = decodeSnapshot(state);
    requireInitialized(snapshot, where);
    const { next, result } = edit(snapshot.s3, snapshot);
    if (next === snapshot.s3) return { writes: [], result };
    return { writes: [{ node: S3, value: { ...editable(state, S3), ...encodeS3(next) } }], result };
  };
}

/** The documents `addUsageChange` reads. */
export function usageNodes(deltas: Readonly<Record<string, number>>): string[] {
  return Object.keys(deltas).map(shardSizeNode);
}

/**
 * Adds to `current` of each shard's size document. A missing document (unknown shard) is skipped and
 * reported; a count that is garbage (null after the original's chunked-upload bug, a string, NaN) restarts
 * from 0, and the result is clamped at 0, so usage never becomes null, NaN or negative.
 */
export function addUsageChange(deltas: Readonly<Record<string, number>>): Change<{ skipped: string[] }> {
  return (state) => {
    const writes: Write[] = [];
    const skipped: string[] = [];
    for (const [id, delta] of Object.entries(deltas)) {
      if (!Number.isFinite(delta) || delta === 0) continue;
      const node = shardSizeNode(id);
      const raw = state.get(node);
      if (raw === undefined) {
        skipped.push(id);
        continue;
      }
      const size: JsonObject = isObject(raw.data) ? structuredClone(raw.data) : {};
      size.current = Math.max(0, sanitizeBytes(size.current) + Math.trunc(delta));
      if (!isObject(raw.data)) size.capacity = 0;
      writes.push({ node, value: size });
    }
    return { writes, result: { skipped } };
  };
}
