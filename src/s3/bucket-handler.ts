/** ListBuckets, CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation: buckets live in the cluster map. */
import type { S3Bucket, S3Config } from "../cluster/types.js";
import { mayCreateBucket, permissionOn, requireAccess } from "./access.js";
import { bucketOf, type S3Context, type S3Request } from "./context.js";
import { S3Error } from "./errors.js";
import { checkBucketName } from "./names.js";
import { isoTime, sendEmpty, sendXml } from "./respond.js";
import { el } from "./xml.js";

export function listBuckets(ctx: S3Context, r: S3Request): void {
  const buckets = Object.values(ctx.map.snapshot().s3.buckets)
    .filter((b) => permissionOn(r.key, b.name) !== undefined && ctx.store.findBucket(b.name) !== undefined)
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  const inner =
    `<Owner>${el("ID", r.key.id)}${el("DisplayName", r.key.name || r.key.id)}</Owner><Buckets>` +
    buckets
      .map((b) => `<Bucket>${el("Name", b.name)}${el("CreationDate", isoTime(b.created))}</Bucket>`)
      .join("") +
    "</Buckets>";
  sendXml(r.res, "ListAllMyBucketsResult", inner, { "x-amz-request-id": r.requestId });
}

export async function createBucket(ctx: S3Context, r: S3Request): Promise<void> {
  const name = bucketOf(r);
  checkBucketName(name);
  if (!mayCreateBucket(r.key, name)) throw new S3Error("AccessDenied", "Access Denied");
  const created = ctx.now();
  const bucket = await ctx.map.updateS3((s3, snapshot): { next: S3Config; result: S3Bucket } => {
    const existing = Object.hasOwn(s3.buckets, name) ? s3.buckets[name] : undefined;
    if (existing !== undefined) {
      throw existing.owner === r.key.id
        ? new S3Error(
            "BucketAlreadyOwnedByYou",
            "Your previous request to create the named bucket succeeded and you already own it.",
          )
        : new S3Error("BucketAlreadyExists", "The requested bucket name is not available.");
    }
    const all = Object.values(snapshot.shards);
    const writable = all.filter((s) => s.enabled);
    const shards = (writable.length > 0 ? writable : all).map((s) => s.id).sort();
    if (shards.length === 0) throw new S3Error("ServiceUnavailable", "the cluster has no shards yet");
    const b: S3Bucket = { name, created: new Date(created).toISOString(), owner: r.key.id, shards };
    return { next: { keys: s3.keys, buckets: { ...s3.buckets, [name]: b } }, result: b };
  });
  ctx.store.noteBucket(name, bucket);
  sendEmpty(r.res, 200, { location: `/${name}`, "x-amz-request-id": r.requestId });
}

export async function deleteBucket(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "owner");
  const bucket = ctx.store.bucket(bucketOf(r));
  const page = await ctx.store.list(`${bucket.name}/`, undefined, 1);
  if (page.entries.length > 0)
    throw new S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty");
  await ctx.map.updateS3((s3) => {
    if (!Object.hasOwn(s3.buckets, bucket.name)) return { next: s3, result: undefined };
    const buckets = { ...s3.buckets };
    delete buckets[bucket.name];
    return { next: { keys: s3.keys, buckets }, result: undefined };
  });
  ctx.store.noteBucket(bucket.name, undefined);
  sendEmpty(r.res, 204, { "x-amz-request-id": r.requestId });
}

export function headBucket(ctx: S3Context, r: S3Request): void {
  requireAccess(r, "read");
  ctx.store.bucket(bucketOf(r));
  sendEmpty(r.res, 200, { "x-amz-bucket-region": ctx.config.region, "x-amz-request-id": r.requestId });
}

export function getBucketLocation(ctx: S3Context, r: S3Request): void {
  requireAccess(r, "read");
  ctx.store.bucket(bucketOf(r));
  // S3 answers an empty constraint for us-east-1.
  const region = ctx.config.region === "us-east-1" ? "" : ctx.config.region;
  sendXml(r.res, "LocationConstraint", region.replace(/[<&]/g, ""), { "x-amz-request-id": r.requestId });
}
