/** How the front answers: XML documents, empty answers, and S3's XML errors. */
import type { ServerResponse } from "node:http";
import type { Logger } from "../common/logger.js";
import { toS3Error } from "./errors.js";
import { errorDocument, xmlDocument } from "./xml.js";

export function sendXml(
  res: ServerResponse,
  root: string,
  inner: string,
  headers: Record<string, string> = {},
): void {
  const text = xmlDocument(root, inner);
  res.writeHead(200, {
    "content-type": "application/xml",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-length": "0", ...headers });
  res.end();
}

/**
 * Answers an error in S3's XML form (no body for HEAD, as S3 does). Unexpected errors become InternalError and
 * are logged here once with their cause; expected ones are one debug line.
 */
export function sendS3Error(
  res: ServerResponse,
  err: unknown,
  info: { resource: string; requestId: string; head: boolean },
  log: Logger,
): void {
  const e = toS3Error(err);
  if (e.code === "InternalError") log.error({ err: e.cause ?? e, resource: info.resource }, "internal error");
  else log.debug({ code: e.code, resource: info.resource, msg: e.message }, "refused");
  if (res.headersSent) {
    res.destroy(e);
    return;
  }
  const headers: Record<string, string> = { "x-amz-request-id": info.requestId };
  if (e.status === 503) headers["retry-after"] = "1";
  if (info.head || e.status === 304) {
    res.writeHead(e.status, { ...headers, "content-length": "0" });
    res.end();
    return;
  }
  const text = errorDocument(e.code, e.message, info.resource, info.requestId);
  res.writeHead(e.status, {
    ...headers,
    "content-type": "application/xml",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

/** S3's time form in XML: `2009-10-12T17:50:30.000Z`. */
export function isoTime(httpDateOrMs: string | number): string {
  const ms = typeof httpDateOrMs === "number" ? httpDateOrMs : Date.parse(httpDateOrMs);
  return new Date(Number.isNaN(ms) ? 0 : ms).toISOString();
}
