/**
 * What a storage node's answers mean: its errors (the JSON `code` and `error` it sends, a 409's held version),
 * a PUT's outcome, and a file's metadata from its headers. Shared by the clients that talk to nodes.
 */
import type { Dispatcher } from "undici";
import { BackpackError, hasCode, isErrorCode, toBackpackError, type ErrorCode } from "../common/errors.js";
import { parseChecksum } from "../common/checksum.js";
import {
  compareVersions,
  DAMAGED_HEADER,
  parseVersion,
  VERSION_HEADER,
  type Version,
} from "../common/version.js";
import { pickStoredHeaders, type StoredHeaders } from "../common/stored-headers.js";

/** A file as a node describes it (GET and HEAD headers). */
export interface NodeObject {
  size: number;
  crc: number;
  contentType: string;
  etag: string;
  lastModified: string;
  /** Undefined from a node that predates versions. */
  version: Version | undefined;
  /** The file's stored headers (Cache-Control, Content-*, Expires, X-Backpack-Meta-*), when it has any. */
  headers?: StoredHeaders;
  /** The node holds it damaged (`X-Backpack-Damaged` on a HEAD): quarantined until repair restores it. */
  damaged?: true;
}

/** Turns a transport failure into UPSTREAM_FAILED / UPSTREAM_TIMEOUT naming the node. */
export function upstreamError(err: unknown, method: string, base: string): BackpackError {
  if (err instanceof BackpackError) return err;
  const code = (err as { code?: string }).code ?? "";
  const timeout = code.includes("TIMEOUT");
  return new BackpackError(
    timeout ? "UPSTREAM_TIMEOUT" : "UPSTREAM_FAILED",
    `${method} ${base} failed: ${(err as Error).message ?? String(err)}`,
    { cause: err },
  );
}

/** Reads a non-expected answer as a BackpackError carrying the node's own code where it sent one. */
export async function expectStatus(
  res: Dispatcher.ResponseData,
  ok: readonly number[],
  base: string,
  key: string,
): Promise<void> {
  if (ok.includes(res.statusCode)) return;
  throw answerError(res.statusCode, await res.body.text().catch(() => ""), base, key);
}

/** The error a node's answer says (its JSON `code` and `error` where it sent them). */
export function answerError(
  status: number,
  text: Buffer | string | undefined,
  base: string,
  what: string,
): BackpackError {
  let code: ErrorCode = status === 404 ? "NOT_FOUND" : status >= 500 ? "UPSTREAM_FAILED" : "BAD_REQUEST";
  let message = `${base} answered ${status} for ${what}`;
  try {
    const body = JSON.parse(text?.toString("utf8") ?? "") as { code?: unknown; error?: unknown };
    if (isErrorCode(body.code)) code = body.code;
    if (typeof body.error === "string") message = `${base}: ${body.error}`;
  } catch {
    // Not a JSON error body.
  }
  return new BackpackError(code, message, { details: { status } });
}

/** A node's answer to a PUT: the checksum and version it stored, or the error it said. */
export function putOutcome(
  status: number,
  header: (name: string) => string,
  text: Buffer | string | undefined,
  base: string,
  key: string,
): { crc: number; version: Version | undefined } {
  if (status === 409) throw staleError(header(VERSION_HEADER), base, key);
  if (status !== 201) throw answerError(status, text, base, key);
  const crc = parseChecksum(header("x-backpack-checksum"));
  if (crc === undefined)
    throw new BackpackError("UPSTREAM_FAILED", `${base} answered PUT without a checksum`);
  return { crc, version: parseVersion(header(VERSION_HEADER)) };
}

/** The STALE_VERSION error of a 409 answer, naming the version the node holds (`details.current`). */
export function staleError(current: string, base: string, key: string): BackpackError {
  return new BackpackError(
    "STALE_VERSION",
    `${base} holds ${key} in version ${current || "?"}, as new or newer`,
    {
      details: { status: 409, current },
    },
  );
}

/** The version a node holds, from its STALE_VERSION refusal (undefined for any other error). */
export function staleCurrent(err: unknown): Version | undefined {
  if (!hasCode(err, "STALE_VERSION")) return undefined;
  const current = toBackpackError(err).details?.current;
  return typeof current === "string" ? parseVersion(current) : undefined;
}

/** A copy or delete refused as stale: the node holds exactly this version (`same`) or a newer one. */
export function sameOrNewer(err: unknown, version: Version): "same" | "newer" {
  if (!hasCode(err, "STALE_VERSION")) throw err;
  const current = staleCurrent(err);
  return current && compareVersions(current, version) === 0 ? "same" : "newer";
}

export function headerText(v: string | string[] | undefined): string {
  return Array.isArray(v) ? (v[0] ?? "") : (v ?? "");
}

export function objectOf(headers: Record<string, string | string[] | undefined>): NodeObject {
  const stored = pickStoredHeaders(headers);
  return {
    size: Number(headerText(headers["content-length"])),
    crc: parseChecksum(headerText(headers["x-backpack-checksum"])) ?? 0,
    contentType: headerText(headers["content-type"]) || "application/octet-stream",
    etag: headerText(headers.etag),
    lastModified: headerText(headers["last-modified"]),
    version: parseVersion(headerText(headers[VERSION_HEADER])),
    ...(stored ? { headers: stored } : {}),
    ...(headers[DAMAGED_HEADER] !== undefined ? { damaged: true as const } : {}),
  };
}
