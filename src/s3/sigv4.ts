/**
 * AWS Signature Version 4 as S3 uses it: the canonical request, the signing key, and the parse of the two
 * places a signature travels (the `Authorization` header and a presigned URL's query). Pure: the clock comes
 * in as a parameter. https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { S3Error } from "./errors.js";

export const ALGORITHM = "AWS4-HMAC-SHA256";
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/** S3 refuses a request whose time is further than this from its clock. */
export const MAX_SKEW_MS = 15 * 60 * 1000;
/** The longest a presigned URL may be valid, as S3 allows: 7 days. */
export const MAX_PRESIGN_SEC = 7 * 24 * 3600;

export interface SignedRequest {
  accessKeyId: string;
  /** `YYYYMMDD/<region>/s3/aws4_request` */
  scope: string;
  date: string;
  region: string;
  /** `YYYYMMDDTHHMMSSZ` */
  amzDate: string;
  signedHeaders: string[];
  signature: string;
  /** What the signature covers of the body: a hex SHA-256, `UNSIGNED-PAYLOAD` or a `STREAMING-...` form. */
  payloadHash: string;
  presigned: boolean;
}

/** One query parameter, decoded. */
export type QueryPair = [name: string, value: string];

/**
 * Where the request carries its signature. Neither header nor presigned query: `undefined` (anonymous).
 * Malformed: AccessDenied / AuthorizationHeaderMalformed-like InvalidArgument, as S3 answers.
 */
export function parseSignature(
  headers: IncomingHttpHeaders,
  query: readonly QueryPair[],
  nowMs: number,
): SignedRequest | undefined {
  const q = new Map(query);
  const header = headers.authorization;
  if (header !== undefined) return parseHeader(header, headers, nowMs);
  if (q.has("X-Amz-Signature")) return parsePresigned(q, headers, nowMs);
  if (q.has("AWSAccessKeyId")) {
    throw new S3Error("InvalidRequest", "Signature Version 2 is not supported; sign with AWS4-HMAC-SHA256");
  }
  return undefined;
}

function parseHeader(header: string, headers: IncomingHttpHeaders, nowMs: number): SignedRequest {
  if (!header.startsWith(`${ALGORITHM} `)) {
    throw new S3Error("InvalidArgument", `Authorization must use ${ALGORITHM} (Signature Version 4)`);
  }
  const fields = new Map<string, string>();
  for (const part of header.slice(ALGORITHM.length + 1).split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const amzDate = headerValue(headers["x-amz-date"]) ?? isoFromHttpDate(headerValue(headers.date));
  const payloadHash = headerValue(headers["x-amz-content-sha256"]);
  if (payloadHash === undefined) {
    throw new S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
  }
  const signed = credentialOf(
    fields.get("Credential"),
    fields.get("SignedHeaders"),
    fields.get("Signature"),
    amzDate,
  );
  checkSkew(signed.amzDate, nowMs);
  return { ...signed, payloadHash, presigned: false };
}

function parsePresigned(q: Map<string, string>, headers: IncomingHttpHeaders, nowMs: number): SignedRequest {
  if (q.get("X-Amz-Algorithm") !== ALGORITHM) {
    throw new S3Error("AuthorizationQueryParametersError", `X-Amz-Algorithm must be ${ALGORITHM}`);
  }
  const signed = credentialOf(
    q.get("X-Amz-Credential"),
    q.get("X-Amz-SignedHeaders"),
    q.get("X-Amz-Signature"),
    q.get("X-Amz-Date"),
  );
  const expires = Number(q.get("X-Amz-Expires"));
  if (!Number.isInteger(expires) || expires < 1 || expires > MAX_PRESIGN_SEC) {
    throw new S3Error(
      "AccessDenied",
      `X-Amz-Expires must be a number of seconds from 1 to ${MAX_PRESIGN_SEC}`,
    );
  }
  const start = timeOf(signed.amzDate);
  if (start - nowMs > MAX_SKEW_MS) {
    throw new S3Error("AccessDenied", "Request is not valid yet (X-Amz-Date is in the future)");
  }
  if (nowMs > start + expires * 1000) throw new S3Error("AccessDenied", "Request has expired");
  const payloadHash = headerValue(headers["x-amz-content-sha256"]) ?? "UNSIGNED-PAYLOAD";
  return { ...signed, payloadHash, presigned: true };
}

function credentialOf(
  credential: string | undefined,
  signedHeaders: string | undefined,
  signature: string | undefined,
  amzDate: string | undefined,
): Omit<SignedRequest, "payloadHash" | "presigned"> {
  const parts = credential?.split("/") ?? [];
  if (parts.length !== 5 || parts[3] !== "s3" || parts[4] !== "aws4_request") {
    throw new S3Error(
      "InvalidArgument",
      "Credential must be <access key id>/<date>/<region>/s3/aws4_request",
    );
  }
  if (signedHeaders === undefined || signedHeaders === "" || signature === undefined) {
    throw new S3Error("InvalidArgument", "the signature needs SignedHeaders and Signature");
  }
  if (amzDate === undefined || !/^\d{8}T\d{6}Z$/.test(amzDate)) {
    throw new S3Error("AccessDenied", "the request needs a valid X-Amz-Date (YYYYMMDDTHHMMSSZ)");
  }
  const [accessKeyId, date, region] = parts as [string, string, string];
  if (!amzDate.startsWith(date)) {
    throw new S3Error("SignatureDoesNotMatch", "the credential's date is not the request's date");
  }
  const names = signedHeaders.split(";");
  if (!names.includes("host")) throw new S3Error("AccessDenied", "the signature must cover the Host header");
  return {
    accessKeyId,
    date,
    region,
    scope: `${date}/${region}/s3/aws4_request`,
    amzDate,
    signedHeaders: names,
    signature,
  };
}

function checkSkew(amzDate: string, nowMs: number): void {
  if (Math.abs(timeOf(amzDate) - nowMs) > MAX_SKEW_MS) {
    throw new S3Error(
      "RequestTimeTooSkewed",
      "The difference between the request time and the server's time is too large.",
    );
  }
}

/** `20130524T000000Z` in ms since the epoch. */
export function timeOf(amzDate: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!m) throw new S3Error("AccessDenied", "X-Amz-Date is not YYYYMMDDTHHMMSSZ");
  const [y = 0, mo = 1, d = 1, h = 0, mi = 0, s = 0] = m.slice(1).map(Number);
  return Date.UTC(y, mo - 1, d, h, mi, s);
}

function isoFromHttpDate(date: string | undefined): string | undefined {
  if (date === undefined) return undefined;
  const ms = Date.parse(date);
  if (Number.isNaN(ms)) return undefined;
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}/, "");
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(",") : v;
}

/** S3's UriEncode: every byte but `A-Za-z0-9-_.~` as `%XX` (upper case); `/` kept when `keepSlash`. */
export function uriEncode(text: string, keepSlash: boolean): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(c) || (keepSlash && c === "/")) out += c;
    else out += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** A raw path or query part percent-decoded (InvalidArgument for a malformed escape). */
export function uriDecode(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new S3Error("InvalidArgument", "the request target has a malformed percent-escape");
  }
}

/** The raw query (after `?`) as decoded pairs, in order. */
export function parseQuery(raw: string): QueryPair[] {
  if (raw === "") return [];
  return raw
    .split("&")
    .filter((p) => p !== "")
    .map((p) => {
      const eq = p.indexOf("=");
      return eq === -1 ? [uriDecode(p), ""] : [uriDecode(p.slice(0, eq)), uriDecode(p.slice(eq + 1))];
    });
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function hmac(key: Uint8Array | string, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

const keyCache = new Map<string, Buffer>();

/** The signing key of a secret for a day and region (kept: it changes once a day per key). */
export function signingKey(secret: string, date: string, region: string): Buffer {
  const id = `${sha256Hex(secret)}/${date}/${region}`;
  let key = keyCache.get(id);
  if (key === undefined) {
    key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), "s3"), "aws4_request");
    if (keyCache.size > 1000) keyCache.clear();
    keyCache.set(id, key);
  }
  return key;
}

export interface CanonicalParts {
  method: string;
  /** The path as sent (raw, still percent-encoded). */
  rawPath: string;
  query: readonly QueryPair[];
  headers: IncomingHttpHeaders;
}

/** The canonical request whose hash is signed. */
export function canonicalRequest(parts: CanonicalParts, signed: SignedRequest): string {
  const path = uriEncode(uriDecode(parts.rawPath), true);
  const query = parts.query
    .filter(([name]) => !(signed.presigned && name === "X-Amz-Signature"))
    .map(([n, v]): [string, string] => [uriEncode(n, false), uriEncode(v, false)])
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([n, v]) => `${n}=${v}`)
    .join("&");
  const headers = signed.signedHeaders
    .map((name) => `${name}:${(headerValue(parts.headers[name]) ?? "").trim().replace(/\s+/g, " ")}\n`)
    .join("");
  return [parts.method, path, query, headers, signed.signedHeaders.join(";"), signed.payloadHash].join("\n");
}

/** The signature the request should carry, given the secret. */
export function expectedSignature(parts: CanonicalParts, signed: SignedRequest, secret: string): string {
  const toSign = [ALGORITHM, signed.amzDate, signed.scope, sha256Hex(canonicalRequest(parts, signed))].join(
    "\n",
  );
  return createHmac("sha256", signingKey(secret, signed.date, signed.region))
    .update(toSign)
    .digest("hex");
}

/** A chunk's signature in an `aws-chunked` body signed with STREAMING-AWS4-HMAC-SHA256-PAYLOAD. */
export function chunkSignature(
  key: Buffer,
  signed: Pick<SignedRequest, "amzDate" | "scope">,
  previous: string,
  chunkSha256: string,
): string {
  const toSign = [
    "AWS4-HMAC-SHA256-PAYLOAD",
    signed.amzDate,
    signed.scope,
    previous,
    EMPTY_SHA256,
    chunkSha256,
  ].join("\n");
  return createHmac("sha256", key).update(toSign).digest("hex");
}

/** The trailer's signature (`x-amz-trailer-signature`) of a signed aws-chunked body with trailers. */
export function trailerSignature(
  key: Buffer,
  signed: Pick<SignedRequest, "amzDate" | "scope">,
  previous: string,
  canonicalTrailers: string,
): string {
  const toSign = [
    "AWS4-HMAC-SHA256-TRAILER",
    signed.amzDate,
    signed.scope,
    previous,
    sha256Hex(canonicalTrailers),
  ].join("\n");
  return createHmac("sha256", key).update(toSign).digest("hex");
}

/** Compares two hex signatures in constant time. */
export function sameSignature(a: string, b: string): boolean {
  const x = Buffer.from(a, "utf8");
  const y = Buffer.from(b, "utf8");
  return x.length === y.length && timingSafeEqual(x, y);
}
