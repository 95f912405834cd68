/**
 * The `aws-chunked` body encoding (S3's streaming uploads): `<hex size>[;chunk-signature=<sig>]\r\n<bytes>\r\n`
 * chunks, a last chunk of size 0, then optional trailers (`x-amz-checksum-crc32:<base64>`) ended by an empty
 * line, with `x-amz-trailer-signature` when the body is signed. Each chunk's signature chains to the previous
 * one (the request's signature seeds the chain), so a signed body cannot be cut, reordered or altered.
 */
import { createHash } from "node:crypto";
import { S3Error } from "./errors.js";
import { chunkSignature, sameSignature, trailerSignature, type SignedRequest } from "./sigv4.js";

/** Longest chunk header or trailer line taken (a sane client's are well under 200 bytes). */
const MAX_LINE = 4096;

export interface ChunkSigning {
  key: Buffer;
  signed: Pick<SignedRequest, "amzDate" | "scope">;
  /** The request's own signature: the seed of the chain. */
  seed: string;
}

/** Reads an async byte source by lines and exact lengths. */
class ByteReader {
  private buf: Buffer = Buffer.alloc(0);
  private readonly it: AsyncIterator<Buffer>;
  private ended = false;

  constructor(source: AsyncIterable<Buffer>) {
    this.it = source[Symbol.asyncIterator]();
  }

  private async more(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.it.next();
    if (next.done === true) {
      this.ended = true;
      return false;
    }
    this.buf = this.buf.length === 0 ? next.value : Buffer.concat([this.buf, next.value]);
    return true;
  }

  /** A line without its CRLF; undefined at the end of the body. */
  async line(): Promise<string | undefined> {
    for (;;) {
      const at = this.buf.indexOf("\r\n");
      if (at !== -1) {
        const text = this.buf.subarray(0, at).toString("latin1");
        this.buf = this.buf.subarray(at + 2);
        return text;
      }
      if (this.buf.length > MAX_LINE) throw malformed("a chunk header line is too long");
      if (!(await this.more())) {
        if (this.buf.length === 0) return undefined;
        throw malformed("the body ends inside a chunk header");
      }
    }
  }

  /** Exactly `n` bytes, in pieces as they arrive. */
  async *take(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buf.length === 0 && !(await this.more()))
        throw new S3Error("IncompleteBody", "the body ends inside a chunk");
      const piece = this.buf.subarray(0, Math.min(left, this.buf.length));
      this.buf = this.buf.subarray(piece.length);
      left -= piece.length;
      yield piece;
    }
  }
}

function malformed(what: string): S3Error {
  return new S3Error("InvalidRequest", `malformed aws-chunked body: ${what}`);
}

/**
 * Decodes an aws-chunked body: yields its bytes, checks every chunk signature when `signing` is given, and
 * fills `trailers` (lower-case names) once the body ends. Throws SignatureDoesNotMatch on a bad signature.
 */
export async function* decodeChunked(
  source: AsyncIterable<Buffer>,
  signing: ChunkSigning | undefined,
  trailers: Map<string, string>,
): AsyncGenerator<Buffer> {
  const reader = new ByteReader(source);
  let previous = signing?.seed ?? "";
  for (;;) {
    const header = await reader.line();
    if (header === undefined) throw new S3Error("IncompleteBody", "the body ends before its last chunk");
    const [sizeText = "", ...exts] = header.split(";");
    if (!/^[0-9a-fA-F]{1,16}$/.test(sizeText)) throw malformed(`bad chunk size "${sizeText.slice(0, 20)}"`);
    const size = Number.parseInt(sizeText, 16);
    const hash = signing ? createHash("sha256") : undefined;
    for await (const piece of reader.take(size)) {
      hash?.update(piece);
      yield piece;
    }
    if (signing) {
      const sig = exts.find((e) => e.startsWith("chunk-signature="))?.slice("chunk-signature=".length);
      const want = chunkSignature(signing.key, signing.signed, previous, hash!.digest("hex"));
      if (sig === undefined || !sameSignature(sig, want)) {
        throw new S3Error("SignatureDoesNotMatch", "a chunk's signature does not match its bytes");
      }
      previous = want;
    }
    if (size > 0) {
      if ((await reader.line()) !== "") throw malformed("a chunk is not followed by CRLF");
      continue;
    }
    await readTrailers(reader, signing, previous, trailers);
    return;
  }
}

async function readTrailers(
  reader: ByteReader,
  signing: ChunkSigning | undefined,
  previous: string,
  trailers: Map<string, string>,
): Promise<void> {
  let canonical = "";
  let signature: string | undefined;
  for (;;) {
    const line = await reader.line();
    if (line === undefined || line === "") break;
    const colon = line.indexOf(":");
    if (colon <= 0) throw malformed("a trailer is not name:value");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "x-amz-trailer-signature") signature = value;
    else {
      trailers.set(name, value);
      canonical += `${name}:${value}\n`;
    }
  }
  if (signing && trailers.size > 0) {
    const want = trailerSignature(signing.key, signing.signed, previous, canonical);
    if (signature === undefined || !sameSignature(signature, want)) {
      throw new S3Error("SignatureDoesNotMatch", "the trailer's signature does not match");
    }
  }
}
