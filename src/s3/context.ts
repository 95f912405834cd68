import type { IncomingMessage, ServerResponse } from "node:http";
import type { ClusterMap, S3AccessKey } from "../cluster/types.js";
import type { Logger } from "../common/logger.js";
import type { S3FrontConfig } from "./config.js";
import type { ObjectStore } from "./object-store.js";
import type { SignedRequest } from "./sigv4.js";

/** What every handler of the front shares. */
export interface S3Context {
  config: Readonly<S3FrontConfig>;
  map: ClusterMap;
  store: ObjectStore;
  log: Logger;
  now: () => number;
}

/** One authenticated request, as the router hands it to a handler. */
export interface S3Request {
  req: IncomingMessage;
  res: ServerResponse;
  /** Decoded query parameters (the last value of a repeated one). */
  query: Map<string, string>;
  key: S3AccessKey;
  signed: SignedRequest;
  /** Undefined for the service (`GET /`). */
  bucketName: string | undefined;
  /** Undefined for bucket requests. */
  objectKey: string | undefined;
  requestId: string;
}

/** A bucket request's bucket name (the router guarantees one). */
export function bucketOf(r: S3Request): string {
  return r.bucketName as string;
}
