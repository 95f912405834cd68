import { createServer } from "node:http";
import { serveForBench } from "./serve.js";

/**
 * The baseline of the HTTP benchmarks: a trivial node:http server that discards PUT bodies (201) and answers
 * every GET with a body from memory. Run as its own process: `node baseline-server.js <get body bytes>`.
 */
const size = Number(process.argv[2] ?? 1024);
const body = Buffer.alloc(size, "b");
const server = createServer((req, res) => {
  if (req.method === "PUT") {
    req.resume();
    req.on("end", () => {
      res.writeHead(201, { "content-length": 0 });
      res.end();
    });
    return;
  }
  res.writeHead(200, { "content-length": body.length, "content-type": "application/octet-stream" });
  res.end(body);
});
serveForBench(server);
