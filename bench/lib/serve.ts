import type { Server } from "node:http";

/**
 * For a benchmark's own server process: keep-alive as the node's, a free loopback port, the `listening` line
 * `startServerProcess` waits for (JSON on stderr), and a clean stop on SIGTERM.
 */
export function serveForBench(server: Server): void {
  server.keepAliveTimeout = 5000;
  server.listen(0, "127.0.0.1", () => {
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    process.stderr.write(JSON.stringify({ msg: "listening", url: `http://127.0.0.1:${port}` }) + "\n");
  });
  process.on("SIGTERM", () => server.close(() => process.exit(0)));
}
