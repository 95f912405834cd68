/** What an access key may do (docs/s3.md, "Access keys"). Pure. */
import type { S3AccessKey, S3Permission } from "../cluster/types.js";
import type { S3Request } from "./context.js";
import { S3Error } from "./errors.js";

const RANK: Readonly<Record<S3Permission, number>> = { read: 1, write: 2, owner: 3 };

/** The key's permission on a bucket: its grant for that bucket or for `*`, whichever is higher. */
export function permissionOn(key: S3AccessKey, bucket: string): S3Permission | undefined {
  const own = Object.hasOwn(key.grants, bucket) ? key.grants[bucket] : undefined;
  const all = Object.hasOwn(key.grants, "*") ? key.grants["*"] : undefined;
  if (own === undefined) return all;
  if (all === undefined) return own;
  return RANK[own] >= RANK[all] ? own : all;
}

export function allows(key: S3AccessKey, bucket: string, need: S3Permission): boolean {
  const has = permissionOn(key, bucket);
  return has !== undefined && RANK[has] >= RANK[need];
}

/** Creating a bucket takes `*:owner`, or an owner grant on that name made beforehand. */
export function mayCreateBucket(key: S3AccessKey, bucket: string): boolean {
  return allows(key, bucket, "owner");
}

/** Parses `<bucket>:<permission>` (a grant as the admin command takes it). */
export function parseGrant(text: string): [bucket: string, permission: S3Permission] | undefined {
  const at = text.lastIndexOf(":");
  if (at <= 0) return undefined;
  const p = text.slice(at + 1);
  if (p !== "read" && p !== "write" && p !== "owner") return undefined;
  return [text.slice(0, at), p];
}

/** AccessDenied unless the request's key has `need` on its bucket. */
export function requireAccess(r: Pick<S3Request, "key" | "bucketName">, need: S3Permission): void {
  if (r.bucketName === undefined || !allows(r.key, r.bucketName, need)) {
    throw new S3Error("AccessDenied", "Access Denied");
  }
}
