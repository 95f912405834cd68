import { createServer } from "node:http";
import { serveForBench } from "./serve.js";

/**
 * The ceiling of `npm run bench:s3`: a server that speaks just enough S3 for the AWS SDK's PutObject and
 * GetObject and does nothing else (no signature check, no storage, no checksum). The SDK against it measures
 * what the client side alone allows on this machine. A PUT's body is read and dropped (200 with an ETag, and the
 * CRC32 the client sent echoed back, as S3 does); a GET answers a body from memory whose size is the number at
 * the start of the key's first path segment after the bucket (`/bench/s3-1024/k1` → 1,024 bytes), with the
 * headers the S3 front sends. Run as its own process: `node null-s3-server.js`.
 */
const bodies = new Map<number, Buffer>();
const ETAG = `"${"0".repeat(32)}"`;
const server = createServer((req, res) => {
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
