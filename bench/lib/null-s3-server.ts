import { createServer } from "node:http";
import { serveForBench } from "./serve.js";

/**
 * The ceiling of `npm run bench:s3`: a server that speaks just enough S3 for the AWS SDK's PutObject and
 * GetObject and does nothing else (no signature check, no storage, no checksum). The SDK against it measures
 * what the client side alone allows on this machine. A PUT's body is read and dropped (200 with an ETag, and the
 * CRC32 the client sent echoed back, as S3 does); a GET answers a body from memory whose size is the number at
 * the start of the key's first path segment after the bucket (`/bench/s3-1024/k1` → 1,024 bytes), with the
 * headers the S3 front sends. A ListObjectsV2 (`?list-type=2`) answers one page of 1,000 keys, truncated, as
 * the S3 front writes it (the ceiling of `npm run bench:list`). Run as its own process: `node null-s3-server.js`.
 */
const bodies = new Map<number, Buffer>();
const ETAG = `"${"0".repeat(32)}"`;
const LIST_PAGE = Buffer.from(
  `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">` +
    `<Name>bucket</Name><Prefix></Prefix><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>` +
    `<KeyCount>1000</KeyCount><NextContinuationToken>bmV4dA</NextContinuationToken>` +
    Array.from(
      { length: 1000 },
      (_, i) =>
        `<Contents><Key>photos/${String(i % 1000).padStart(3, "0")}/IMG_${500_000 + i}.jpg</Key>` +
        `<LastModified>2026-12-04T12:00:00.000Z</LastModified>` +
        `<ETag>&quot;${(i * 2654435761).toString(16).padStart(32, "0").slice(-32)}&quot;</ETag>` +
        `<Size>100</Size><StorageClass>STANDARD</StorageClass></Contents>`,
    ).join("") +
    `</ListBucketResult>`,
);
const server = createServer((req, res) => {
  if (req.method === "GET" && req.url?.includes("list-type=2")) {
    res.writeHead(200, { "content-type": "application/xml", "content-length": LIST_PAGE.length });
    res.end(LIST_PAGE);
    return;
  }
  if (req.method === "PUT") {
    req.resume();
    req.on("end", () => {
      const crc = req.headers["x-amz-checksum-crc32"] ?? req.trailers["x-amz-checksum-crc32"];
      res.writeHead(200, {
        etag: ETAG,
        "content-length": 0,
        ...(typeof crc === "string" ? { "x-amz-checksum-crc32": crc } : {}),
      });
      res.end();
    });
    return;
  }
  const size = Number(/^\/[^/]+\/[a-z0-9]*-(\d+)\//.exec(req.url ?? "")?.[1] ?? 0);
  let body = bodies.get(size);
  if (!body) bodies.set(size, (body = Buffer.alloc(size, "b")));
  res.writeHead(200, {
    "content-length": body.length,
    "content-type": "application/octet-stream",
    etag: ETAG,
    "last-modified": new Date(0).toUTCString(),
    "accept-ranges": "bytes",
  });
  res.end(body);
});
serveForBench(server);
