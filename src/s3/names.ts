/**
 * The store's names for what S3 addresses (docs/s3.md, "Internal names"), and the stored headers that carry
 * S3's metadata. Pure.
 */
import { S3Error } from "./errors.js";

/** Where the store's multipart files live: never a bucket (bucket names start with a letter or a digit). */
export const INTERNAL_PREFIX = "_s3/";

export const META = {
  etag: "x-backpack-meta-s3-etag",
  /** A manifest: the object's size (the record holds the manifest). */
  size: "x-backpack-meta-s3-size",
  /** A manifest: the upload its parts belong to. */
  upload: "x-backpack-meta-s3-upload",
  /** An upload's file: its key (percent-encoded), and whether it was completed. */
  key: "x-backpack-meta-s3-key",
  state: "x-backpack-meta-s3-state",
  /** A user metadata header `x-amz-meta-<name>` is stored as this prefix + `<name>`. */
  userPrefix: "x-backpack-meta-s3-meta-",
} as const;

/** The stored headers S3 gives back as they are. */
export const PLAIN_HEADERS = [
  "content-type",
  "cache-control",
  "content-disposition",
  "content-encoding",
  "content-language",
  "expires",
] as const;

export function objectName(bucket: string, key: string): string {
  return `${bucket}/${key}`;
}

export function uploadsPrefix(bucket: string): string {
  return `${INTERNAL_PREFIX}uploads/${bucket}/`;
}

export function uploadName(bucket: string, uploadId: string): string {
  return `${uploadsPrefix(bucket)}${uploadId}`;
}

export function partsPrefix(bucket: string, uploadId: string): string {
  return `${INTERNAL_PREFIX}parts/${bucket}/${uploadId}/`;
}

export function partName(bucket: string, uploadId: string, part: number): string {
  return `${partsPrefix(bucket, uploadId)}${String(part).padStart(5, "0")}`;
}

/** S3's bucket naming rules (the DNS-compatible ones every current client assumes). */
export function checkBucketName(name: string): void {
  const ok =
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) &&
    !name.includes("..") &&
    !/^\d+\.\d+\.\d+\.\d+$/.test(name) &&
    !name.startsWith("xn--");
  if (!ok) {
    throw new S3Error(
      "InvalidBucketName",
      "bucket names are 3-63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit",
    );
  }
}

/** An upload id: 32 hex digits (what the front makes); anything else is no upload. */
export function checkUploadId(id: string | undefined): string {
  if (id === undefined || !/^[0-9a-f]{32}$/.test(id)) {
    throw new S3Error("NoSuchUpload", "The specified upload does not exist.");
  }
  return id;
}
