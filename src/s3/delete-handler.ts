/** DeleteObject and DeleteObjects (a multipart object's parts go with the next sweep, docs/s3.md). */
import { requireAccess } from "./access.js";
import { bucketOf, type S3Context, type S3Request } from "./context.js";
import { S3Error, toS3Error } from "./errors.js";
import { objectName } from "./names.js";
import { receiveXml } from "./put-handler.js";
import { sendEmpty, sendXml } from "./respond.js";
import { childText, el, elements, requireRoot } from "./xml.js";

/** DeleteObjects takes at most this many keys, as S3 does. */
const MAX_DELETE_KEYS = 1000;
/** Deletes of one DeleteObjects request made at once. */
const DELETE_CONCURRENCY = 8;

export async function deleteObject(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "write");
  const bucket = ctx.store.bucket(bucketOf(r));
  await ctx.store.delete(bucket, objectName(bucket.name, r.objectKey as string));
  sendEmpty(r.res, 204, { "x-amz-request-id": r.requestId });
}

export async function deleteObjects(ctx: S3Context, r: S3Request): Promise<void> {
  requireAccess(r, "write");
  const bucket = ctx.store.bucket(bucketOf(r));
  const xml = await receiveXml(ctx, r);
  const inner = requireRoot(xml, "Delete");
  const quiet = childText(inner, "Quiet") === "true";
  const keys = elements(inner, "Object").map((o) => childText(o, "Key"));
  if (keys.length > MAX_DELETE_KEYS)
    throw new S3Error("MalformedXML", `at most ${MAX_DELETE_KEYS} keys per request`);
  if (keys.some((k) => k === undefined || k === ""))
    throw new S3Error("MalformedXML", "every <Object> needs a <Key>");
  const results: string[] = new Array<string>(keys.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < keys.length; i = next++) {
      const key = keys[i] as string;
      try {
        await ctx.store.delete(bucket, objectName(bucket.name, key));
        results[i] = quiet ? "" : `<Deleted>${el("Key", key)}</Deleted>`;
      } catch (err) {
        const e = toS3Error(err);
        results[i] = `<Error>${el("Key", key)}${el("Code", e.code)}${el("Message", e.message)}</Error>`;
      }
    }
  };
  await Promise.all(Array.from({ length: DELETE_CONCURRENCY }, worker));
  sendXml(r.res, "DeleteResult", results.join(""), { "x-amz-request-id": r.requestId });
}
