/**
 * S3's errors: S3 clients branch on the XML `<Code>`, so the front answers S3's codes (not backpack's) with
 * S3's statuses. The table is checked by the compiler like `common/errors.ts`.
 */
import { hasCode, toBackpackError } from "../common/errors.js";

export const S3_ERROR_STATUS = {
  AccessDenied: 403,
  AuthorizationQueryParametersError: 400,
  BadDigest: 400,
  BucketAlreadyExists: 409,
  BucketAlreadyOwnedByYou: 409,
  BucketNotEmpty: 409,
  EntityTooLarge: 400,
  EntityTooSmall: 400,
  IncompleteBody: 400,
  InternalError: 500,
  InvalidAccessKeyId: 403,
  InvalidArgument: 400,
  InvalidBucketName: 400,
  InvalidDigest: 400,
  InvalidPart: 400,
  InvalidPartOrder: 400,
  InvalidRange: 416,
  InvalidRequest: 400,
  KeyTooLongError: 400,
  MalformedXML: 400,
  MethodNotAllowed: 405,
  MissingContentLength: 411,
  NoSuchBucket: 404,
  NoSuchKey: 404,
  NoSuchUpload: 404,
  NotImplemented: 501,
  NotModified: 304,
  PreconditionFailed: 412,
  RequestTimeTooSkewed: 403,
  ServiceUnavailable: 503,
  SignatureDoesNotMatch: 403,
  SlowDown: 503,
  XAmzContentSHA256Mismatch: 400,
} as const satisfies Record<string, number>;

export type S3ErrorCode = keyof typeof S3_ERROR_STATUS;

export class S3Error extends Error {
  readonly code: S3ErrorCode;
  constructor(code: S3ErrorCode, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "S3Error";
    this.code = code;
  }

  get status(): number {
    return S3_ERROR_STATUS[this.code];
  }
}

/** A BackpackError code from the coordinator, as the S3 error a client understands. */
const FROM_BACKPACK: Readonly<Record<string, S3ErrorCode>> = {
  INVALID_KEY: "InvalidArgument",
  INVALID_ARGUMENT: "InvalidArgument",
  BAD_REQUEST: "InvalidRequest",
  BODY_TOO_LARGE: "EntityTooLarge",
  HEADERS_TOO_LARGE: "InvalidArgument",
  CHECKSUM_MISMATCH: "BadDigest",
  CLIENT_ABORTED: "IncompleteBody",
  REQUEST_TIMEOUT: "IncompleteBody",
  RANGE_NOT_SATISFIABLE: "InvalidRange",
  PRECONDITION_FAILED: "PreconditionFailed",
  RATE_LIMITED: "SlowDown",
  NO_SPACE: "ServiceUnavailable",
  NO_WRITABLE_SHARDS: "ServiceUnavailable",
  OVERLOADED: "SlowDown",
  UNAVAILABLE: "ServiceUnavailable",
  SHUTTING_DOWN: "ServiceUnavailable",
  NOT_INITIALIZED: "ServiceUnavailable",
  UPSTREAM_FAILED: "ServiceUnavailable",
  UPSTREAM_TIMEOUT: "ServiceUnavailable",
};

/** Any thrown value as an S3Error; unexpected ones become InternalError with the original as `cause`. */
export function toS3Error(err: unknown): S3Error {
  if (err instanceof S3Error) return err;
  const e = toBackpackError(err);
  const code = FROM_BACKPACK[e.code];
  if (code !== undefined) return new S3Error(code, e.message, { cause: err });
  return new S3Error("InternalError", "We encountered an internal error. Please try again.", {
    cause: hasCode(e, "INTERNAL") ? (e.cause ?? err) : err,
  });
}
