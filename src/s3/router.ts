/** Which S3 operation a request is: method, bucket/key and sub-resource (query) decide. */
import { createBucket, deleteBucket, getBucketLocation, headBucket, listBuckets } from "./bucket-handler.js";
import type { S3Context, S3Request } from "./context.js";
import { deleteObject, deleteObjects } from "./delete-handler.js";
import { S3Error } from "./errors.js";
import { getObject } from "./get-handler.js";
import { listObjects } from "./list-handler.js";
import {
  abortMultipartUpload,
  completeMultipartUpload,
  createMultipartUpload,
  listMultipartUploads,
  listParts,
  uploadPart,
} from "./multipart.js";
import { putObject } from "./put-handler.js";

/** Sub-resources of S3 APIs this front does not implement: answered 501, never taken as a plain request. */
const UNSUPPORTED = [
  "accelerate",
  "acl",
  "analytics",
  "attributes",
  "cors",
  "encryption",
  "intelligent-tiering",
  "inventory",
  "legal-hold",
  "lifecycle",
  "logging",
  "metrics",
  "notification",
  "object-lock",
  "ownershipControls",
  "policy",
  "policyStatus",
  "publicAccessBlock",
  "replication",
  "requestPayment",
  "restore",
  "retention",
  "select",
  "tagging",
  "torrent",
  "versioning",
  "versions",
  "website",
];

export async function route(ctx: S3Context, r: S3Request): Promise<void> {
  const q = r.query;
  const method = r.req.method ?? "GET";
  const sub = UNSUPPORTED.find((name) => q.has(name));
  if (sub !== undefined) throw new S3Error("NotImplemented", `?${sub} is not implemented`);
  if (r.bucketName === undefined) {
    if (method === "GET") return listBuckets(ctx, r);
    throw new S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.");
  }
  if (r.objectKey === undefined) {
    switch (method) {
      case "PUT":
        return createBucket(ctx, r);
      case "DELETE":
        return deleteBucket(ctx, r);
      case "HEAD":
        return headBucket(ctx, r);
      case "GET":
        if (q.has("location")) return getBucketLocation(ctx, r);
        if (q.has("uploads")) return listMultipartUploads(ctx, r);
        return listObjects(ctx, r);
      case "POST":
        if (q.has("delete")) return deleteObjects(ctx, r);
        break;
    }
    throw new S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.");
  }
  switch (method) {
    case "PUT":
      return q.has("uploadId") ? uploadPart(ctx, r) : putObject(ctx, r);
    case "GET":
      return q.has("uploadId") ? listParts(ctx, r) : getObject(ctx, r);
    case "HEAD":
      return getObject(ctx, r);
    case "DELETE":
      return q.has("uploadId") ? abortMultipartUpload(ctx, r) : deleteObject(ctx, r);
    case "POST":
      if (q.has("uploads")) return createMultipartUpload(ctx, r);
      if (q.has("uploadId")) return completeMultipartUpload(ctx, r);
      break;
  }
  throw new S3Error("MethodNotAllowed", "The specified method is not allowed against this resource.");
}
