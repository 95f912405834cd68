/** A multipart object's manifest: its parts in order (docs/s3.md, "Objects as stored"). Pure. */
import { S3Error } from "./errors.js";

export interface ManifestPart {
  /** The part number the client gave. */
  n: number;
  /** The part's file and the shard holding it. */
  name: string;
  shard: string;
  size: number;
}

export interface Manifest {
  parts: ManifestPart[];
  size: number;
}

export function encodeManifest(m: Manifest): Buffer {
  return Buffer.from(JSON.stringify(m));
}

export function decodeManifest(data: Buffer): Manifest {
  let m: unknown;
  try {
    m = JSON.parse(data.toString("utf8"));
  } catch {
    m = undefined;
  }
  const ok =
    typeof m === "object" &&
    m !== null &&
    Array.isArray((m as Manifest).parts) &&
    Number.isInteger((m as Manifest).size) &&
    (m as Manifest).parts.every(
      (p) =>
        typeof p.name === "string" &&
        typeof p.shard === "string" &&
        Number.isInteger(p.size) &&
        Number.isInteger(p.n),
    );
  if (!ok) throw new S3Error("InternalError", "a multipart object's manifest is damaged");
  return m as Manifest;
}

export type ByteRange = { start: number; end: number };

/**
 * A `Range` header over an object of `size` bytes: one range `bytes=a-b`, `a-` or `-n`. Undefined for no or an
 * unusable header (the whole object is answered, as RFC 9110 allows); InvalidRange when it starts past the end.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  let start: number;
  let end: number;
  if (m[1] === "") {
    const n = Number(m[2]);
    if (n === 0) throw new S3Error("InvalidRange", "The requested range is not satisfiable");
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (end < start && m[2] !== "") return undefined;
  }
  if (start >= size) throw new S3Error("InvalidRange", "The requested range is not satisfiable");
  return { start, end };
}
