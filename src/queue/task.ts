import { randomBytes } from "node:crypto";
import { parseChecksum } from "../common/checksum.js";
import { validateKey } from "../common/key.js";
import { parseVersion } from "../common/version.js";
import type { ReplicationTask } from "./types.js";

/**
 * A queue id: the enqueue time in base 36 (so ids sort roughly by age in listings) and 48 random bits (so
 * two coordinators never collide without talking to each other).
 */
export function newTaskId(now: number): string {
  if (entropyAt + ID_RANDOM_BYTES > entropy.length) {
    entropy = randomBytes(ENTROPY_BYTES);
    entropyAt = 0;
  }
  const id = entropy.toString("hex", entropyAt, entropyAt + ID_RANDOM_BYTES);
  entropyAt += ID_RANDOM_BYTES;
  return `${now.toString(36)}-${id}`;
}

const ID_RANDOM_BYTES = 6;
/** Random bytes are drawn in blocks: one system call per ~680 ids instead of one per id. */
const ENTROPY_BYTES = 4096;
let entropy = Buffer.alloc(0);
let entropyAt = 0;

/** The stored form of a task: one small JSON record. */
export function encodeTask(task: ReplicationTask): string {
  return JSON.stringify(task);
}

/**
 * Parses a stored payload. Returns the task, or the reason it is malformed (the task is then dead-lettered
 * at once: retrying a payload that cannot be read never helps).
 */
export function decodeTask(raw: string): { task: ReplicationTask } | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { error: "payload is not JSON" };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { error: "payload is not a JSON object" };
  }
  const v = value as Record<string, unknown>;
  if (v.op !== "copy" && v.op !== "delete") return { error: `op must be "copy" or "delete"` };
  if (typeof v.shard !== "string" || v.shard === "") return { error: "shard must be a non-empty string" };
  if (typeof v.target !== "string" || v.target === "") return { error: "target must be a non-empty string" };
  if (typeof v.key !== "string") return { error: "key must be a string" };
  try {
    validateKey(v.key);
  } catch (err) {
    return { error: `key is not valid: ${(err as Error).message}` };
  }
  if (!Array.isArray(v.sources) || !v.sources.every((s) => typeof s === "string" && s !== "")) {
    return { error: "sources must be an array of server ids" };
  }
  if (v.op === "copy" && v.sources.length === 0) return { error: "a copy needs at least one source" };
  if (typeof v.crc !== "string" || (v.op === "copy" && parseChecksum(v.crc) === undefined)) {
    return { error: "crc must be 8 hex digits" };
  }
  if (!Number.isSafeInteger(v.size) || (v.size as number) < 0)
    return { error: "size must be a whole number ≥ 0" };
  if (typeof v.createdAt !== "number" || !Number.isFinite(v.createdAt)) {
    return { error: "createdAt must be a number (ms since the epoch)" };
  }
  if (
    v.version !== undefined &&
    parseVersion(typeof v.version === "string" ? v.version : undefined) === undefined
  ) {
    return { error: "version must be a version (16 digits, -, 4 hex digits)" };
  }
  return {
    task: {
      op: v.op,
      shard: v.shard,
      sources: v.sources as string[],
      target: v.target,
      key: v.key,
      crc: v.crc,
      size: v.size as number,
      createdAt: v.createdAt,
      ...(v.version !== undefined ? { version: v.version as string } : {}),
    },
  };
}

/** `createdAt` of a payload when it has one (malformed payloads count from when they were queued). */
export function createdAtOf(raw: string, fallback: number): number {
  try {
    const v = JSON.parse(raw) as { createdAt?: unknown };
    return typeof v.createdAt === "number" && Number.isFinite(v.createdAt) ? v.createdAt : fallback;
  } catch {
    return fallback;
  }
}
