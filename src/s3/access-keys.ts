/** Making and revoking access keys in the cluster map (the admin command and the embedded cluster's local key). */
import { randomBytes } from "node:crypto";
import type { S3AccessKey, S3Config, S3Edit, S3Permission } from "../cluster/types.js";
import { BackpackError } from "../common/errors.js";

const ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/** A new key: a 20-character id (`BK` + 18) and a 40-character secret, from the system's random source. */
export function newAccessKey(name: string, grants: Record<string, S3Permission>, nowMs: number): S3AccessKey {
  const bytes = randomBytes(18);
  const id = "BK" + Array.from(bytes, (b) => ID_CHARS[b % ID_CHARS.length]).join("");
  const secret = randomBytes(30).toString("base64").replace(/\+/g, "a").replace(/\//g, "b");
  return { id, secret, name, created: new Date(nowMs).toISOString(), grants };
}

/** Adds a key (refused if the id is taken: ids are random, so that never happens by chance). */
export function addKey(key: S3AccessKey): S3Edit<S3AccessKey> {
  return (s3: S3Config) => {
    if (Object.hasOwn(s3.keys, key.id))
      throw new BackpackError("ALREADY_EXISTS", `access key ${key.id} exists`);
    return { next: { keys: { ...s3.keys, [key.id]: key }, buckets: s3.buckets }, result: key };
  };
}

/** Removes a key; resolves false when there was no such key. */
export function revokeKey(id: string): S3Edit<boolean> {
  return (s3: S3Config) => {
    if (!Object.hasOwn(s3.keys, id)) return { next: s3, result: false };
    const keys = { ...s3.keys };
    delete keys[id];
    return { next: { keys, buckets: s3.buckets }, result: true };
  };
}
