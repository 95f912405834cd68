/**
 * Receives an upload's body (PutObject, UploadPart) and verifies everything the client declared about it
 * before a byte is sent on: the payload SHA-256 (or each chunk's signature), `Content-MD5`,
 * `x-amz-checksum-crc32` (header or trailer) and the length. The body is held in memory up to `memoryBytes`,
 * beyond that spooled to a temp file; the caller sends it on and disposes of it.
 */
import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, unlink, type FileHandle } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { checksum, formatChecksum } from "../common/checksum.js";
import { decodeChunked, type ChunkSigning } from "./chunked.js";
import { S3Error } from "./errors.js";
import { signingKey, type SignedRequest } from "./sigv4.js";

export interface BodyLimits {
  /** The largest body taken (EntityTooLarge beyond, before reading when declared). */
  maxBytes: number;
  /** Bodies up to this size stay in memory; larger ones go to a file in `tmpDir`. */
  memoryBytes: number;
  tmpDir: string;
}

export class VerifiedBody {
  constructor(
    readonly size: number,
    /** The body's MD5, hex: the S3 ETag of a single-part object. */
    readonly md5Hex: string,
    /** CRC-32 (IEEE) of the body, as the store's record checksum. */
    readonly crc32: number,
    private readonly data: Buffer | undefined,
    private readonly file: string | undefined,
  ) {}

  /** The body to send on: the bytes, or a stream of the spooled file. */
  payload(): Buffer | Readable {
    return this.data ?? createReadStream(this.file as string);
  }

  get crc32Hex(): string {
    return formatChecksum(this.crc32);
  }

  /** `x-amz-checksum-crc32` form: the CRC's 4 bytes big-endian, base64. */
  get crc32Base64(): string {
    return crc32Base64(this.crc32);
  }

  async dispose(): Promise<void> {
    if (this.file !== undefined) await unlink(this.file).catch(() => undefined);
  }
}

export function crc32Base64(crc: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc >>> 0);
  return b.toString("base64");
}

/** Checksum algorithms a client may name that the front cannot verify: refused rather than ignored. */
const UNSUPPORTED_CHECKSUMS = ["x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme"];

export async function receiveBody(
  req: IncomingMessage,
  signed: SignedRequest,
  secret: string,
  limits: BodyLimits,
): Promise<VerifiedBody> {
  const mode = signed.payloadHash;
  const chunked = mode.startsWith("STREAMING-");
  const hexSha = /^[0-9a-f]{64}$/.test(mode) ? mode : undefined;
  if (!chunked && hexSha === undefined && mode !== "UNSIGNED-PAYLOAD") {
    throw new S3Error("InvalidArgument", `x-amz-content-sha256 "${mode.slice(0, 80)}" is not a known form`);
  }
  if (
    chunked &&
    ![
      "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
      "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
      "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    ].includes(mode)
  ) {
    throw new S3Error("NotImplemented", `${mode} bodies are not supported`);
  }
  const declared = declaredLength(req, chunked);
  if (declared !== undefined && declared > limits.maxBytes) {
    throw new S3Error(
      "EntityTooLarge",
      `Your proposed upload exceeds the maximum allowed size (${limits.maxBytes} bytes)`,
    );
  }
  const named = new Set([
    ...trailerNames(req),
    ...Object.keys(req.headers).filter((h) => h.startsWith("x-amz-checksum-")),
  ]);
  for (const name of UNSUPPORTED_CHECKSUMS) {
    if (named.has(name))
      throw new S3Error("NotImplemented", `${name} is not supported; use CRC32, SHA1 or SHA256`);
  }
  const md5Declared = base64Digest(req.headers["content-md5"], 16, "Content-MD5", "InvalidDigest");
  const trailers = new Map<string, string>();
  const signing: ChunkSigning | undefined = mode.startsWith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    ? { key: signingKey(secret, signed.date, signed.region), signed, seed: signed.signature }
    : undefined;
  const source = chunked ? decodeChunked(req, signing, trailers) : (req as AsyncIterable<Buffer>);

  const sha = hexSha ? createHash("sha256") : undefined;
  const sha1 = named.has("x-amz-checksum-sha1") ? createHash("sha1") : undefined;
  const sha256 = named.has("x-amz-checksum-sha256") ? createHash("sha256") : undefined;
  const body = await collectBody(source, limits, (piece) => {
    sha?.update(piece);
    sha1?.update(piece);
    sha256?.update(piece);
  });
  try {
    if (declared !== undefined && body.size !== declared) {
      throw new S3Error("IncompleteBody", `the body has ${body.size} bytes, ${declared} were declared`);
    }
    if (sha && sha.digest("hex") !== hexSha) {
      throw new S3Error(
        "XAmzContentSHA256Mismatch",
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
      );
    }
    if (md5Declared && md5Declared.toString("hex") !== body.md5Hex) {
      throw new S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.");
    }
    checkDeclared(req, trailers, "x-amz-checksum-crc32", () => body.crc32Base64);
    checkDeclared(req, trailers, "x-amz-checksum-sha1", () => sha1!.digest("base64"));
    checkDeclared(req, trailers, "x-amz-checksum-sha256", () => sha256!.digest("base64"));
    return body;
  } catch (err) {
    await body.dispose();
    throw err;
  }
}

/**
 * Takes a body whole, computing its MD5 and CRC-32 (and whatever `observe` computes): in memory up to
 * `limits.memoryBytes`, else in a temp file. EntityTooLarge past `limits.maxBytes`.
 */
export async function collectBody(
  source: AsyncIterable<Buffer>,
  limits: BodyLimits,
  observe?: (piece: Buffer) => void,
): Promise<VerifiedBody> {
  const md5 = createHash("md5");
  let crc = 0;
  let size = 0;
  const held: Buffer[] = [];
  let file: FileHandle | undefined;
  let path: string | undefined;
  try {
    for await (const piece of source) {
      size += piece.length;
      if (size > limits.maxBytes) {
        throw new S3Error(
          "EntityTooLarge",
          `Your proposed upload exceeds the maximum allowed size (${limits.maxBytes} bytes)`,
        );
      }
      md5.update(piece);
      observe?.(piece);
      crc = checksum(piece, crc);
      if (file === undefined && size > limits.memoryBytes) {
        path = join(limits.tmpDir, `s3-${randomBytes(12).toString("hex")}.body`);
        file = await open(path, "wx", 0o600);
        for (const h of held.splice(0)) await file.write(h);
      }
      if (file !== undefined) await file.write(piece);
      else held.push(piece);
    }
    await file?.close();
    file = undefined;
    const body = new VerifiedBody(
      size,
      md5.digest("hex"),
      crc,
      path === undefined ? Buffer.concat(held, size) : undefined,
      path,
    );
    path = undefined;
    return body;
  } finally {
    await file?.close().catch(() => undefined);
    if (path !== undefined) await unlink(path).catch(() => undefined);
  }
}

/** The body's length as the client declared it: `x-amz-decoded-content-length` for aws-chunked. */
function declaredLength(req: IncomingMessage, chunked: boolean): number | undefined {
  const raw = chunked ? req.headers["x-amz-decoded-content-length"] : req.headers["content-length"];
  const text = Array.isArray(raw) ? raw.join(",") : raw;
  if (text === undefined) {
    if (chunked)
      throw new S3Error("MissingContentLength", "aws-chunked bodies need x-amz-decoded-content-length");
    return undefined;
  }
  if (!/^\d{1,15}$/.test(text))
    throw new S3Error("InvalidArgument", "the declared content length is not a number");
  return Number(text);
}

/** The trailers the request announces (`x-amz-trailer`), lower-case. */
export function trailerNames(req: IncomingMessage): string[] {
  const t = req.headers["x-amz-trailer"];
  return t === undefined
    ? []
    : (Array.isArray(t) ? t.join(",") : t)
        .split(",")
        .map((s) => s.trim().toLowerCase())
        .filter((s) => s !== "");
}

function base64Digest(
  value: string | string[] | undefined,
  bytes: number,
  what: string,
  code: "InvalidDigest" | "InvalidArgument",
): Buffer | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value.join(",") : value;
  const b = Buffer.from(text, "base64");
  if (b.length !== bytes || b.toString("base64") !== text) {
    throw new S3Error(code, `${what} is not a base64 digest of ${bytes} bytes`);
  }
  return b;
}

/** Compares a checksum the client sent (header, or trailer named in x-amz-trailer) with the computed one. */
function checkDeclared(
  req: IncomingMessage,
  trailers: Map<string, string>,
  name: string,
  computed: () => string,
): void {
  const header = req.headers[name];
  const declared = typeof header === "string" ? header : trailers.get(name);
  if (declared === undefined) {
    if (trailerNames(req).includes(name))
      throw new S3Error("InvalidRequest", `the trailer ${name} is missing`);
    return;
  }
  if (declared !== computed()) {
    const algo = name.slice("x-amz-checksum-".length).toUpperCase();
    throw new S3Error("BadDigest", `The ${algo} you specified did not match the calculated checksum.`);
  }
}
