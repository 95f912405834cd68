import type { Duplex } from "node:stream";
import { STATUS_CODES } from "node:http";
import type { ErrorCode } from "../common/errors.js";
import type { NodeStats } from "./node-stats.js";

/**
 * Answers a request the HTTP parser refused (malformed request line or headers, headers too large, headers
 * not received in time) with the same JSON error shape as every other answer, then closes the connection.
 */
export function onClientError(stats: NodeStats, err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === "ECONNRESET" || !socket.writable) {
    socket.destroy();
    return;
  }
  let status = 400;
  let code: ErrorCode = "BAD_REQUEST";
  let message = "malformed HTTP request";
  if (err.code === "HPE_HEADER_OVERFLOW") {
    status = 431;
    code = "HEADERS_TOO_LARGE";
    message = "request headers are too large";
    stats.refused.bad_request++;
  } else if (err.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    status = 408;
    code = "REQUEST_TIMEOUT";
    message = "request headers were not received in time";
    stats.refused.timeout++;
  } else {
    stats.refused.bad_request++;
  }
  const body = JSON.stringify({ error: message, code });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n` +
      "content-type: application/json; charset=utf-8\r\n" +
      `content-length: ${Buffer.byteLength(body)}\r\n` +
      "connection: close\r\n\r\n" +
      body,
  );
}
