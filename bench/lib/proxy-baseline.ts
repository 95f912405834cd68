import { createServer, type ServerResponse } from "node:http";
import { FORWARD_RESPONSE } from "../../src/coordinator/read-handler.js";
import { serveForBench } from "./serve.js";
import { connect, type Socket } from "node:net";
import { Agent, request } from "undici";

/**
 * A baseline of the cluster benchmark: the least a Node proxy hop can cost on this machine. A plain `node:http`
 * server that forwards every GET, path unchanged, to one upstream and answers with its status, the same headers
 * the coordinator passes back, and the body (read whole, as the coordinator does for small files). No key
 * checks, no failover, no metrics. Run as its own process:
 * `node proxy-baseline.js <upstream url> undici|socket`.
 *
 * - `undici`: the upstream request through undici (what the coordinator uses).
 * - `socket`: a bare keep-alive socket per in-flight request and a hand-written response reader that only
 *   knows `Content-Length` bodies: no HTTP client can be cheaper, and it is not robust enough to be anything
 *   but a measuring stick.
 */
const [upstream = "", mode = "undici"] = process.argv.slice(2);
const target = new URL(upstream);

type Reply = (status: number, headers: Record<string, string>, body: Buffer) => void;

const agent = new Agent({ connections: 64, keepAliveTimeout: 30_000 });

function viaUndici(path: string, reply: Reply, fail: () => void): void {
  request(`${upstream}${path}`, { dispatcher: agent })
    .then(async (res) => {
      const body = Buffer.from(await res.body.arrayBuffer());
      const headers: Record<string, string> = {};
      for (const name of FORWARD_RESPONSE) {
        const v = res.headers[name];
        if (typeof v === "string") headers[name] = v;
      }
      reply(res.statusCode, headers, body);
    })
    .catch(fail);
}

interface Conn {
  socket: Socket;
  pending: Buffer | undefined;
  reply: Reply | undefined;
  fail: (() => void) | undefined;
}

const idle: Conn[] = [];

function viaSocket(path: string, reply: Reply, fail: () => void): void {
  let conn = idle.pop();
  if (conn === undefined) {
    const socket = connect(Number(target.port), target.hostname);
    socket.setNoDelay(true);
    const c: Conn = { socket, pending: undefined, reply: undefined, fail: undefined };
    socket.on("data", (chunk: Buffer) => onData(c, chunk));
    socket.on("error", () => c.fail?.());
    socket.on("close", () => {
      const i = idle.indexOf(c);
      if (i !== -1) idle.splice(i, 1);
    });
    conn = c;
  }
  conn.reply = reply;
  conn.fail = fail;
  conn.socket.write(`GET ${path} HTTP/1.1\r\nhost: ${target.host}\r\n\r\n`, "latin1");
}

function onData(c: Conn, chunk: Buffer): void {
  const buf = c.pending ? Buffer.concat([c.pending, chunk]) : chunk;
  const end = buf.indexOf("\r\n\r\n");
  const head = end < 0 ? "" : buf.toString("latin1", 0, end);
  const at = head.search(/\r\ncontent-length:/i);
  const length = at < 0 ? 0 : Number.parseInt(head.slice(at + 17), 10);
  if (end < 0 || buf.length < end + 4 + length) {
    c.pending = buf;
    return;
  }
  c.pending = undefined;
  const headers: Record<string, string> = {};
  for (const line of head.split("\r\n").slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    if (FORWARD_RESPONSE.includes(name)) headers[name] = line.slice(colon + 1).trim();
  }
  const reply = c.reply;
  c.reply = c.fail = undefined;
  idle.push(c);
  reply?.(Number(head.slice(9, 12)), headers, buf.subarray(end + 4, end + 4 + length));
}

const forward = mode === "socket" ? viaSocket : viaUndici;

const server = createServer((req, res: ServerResponse) => {
  forward(
    req.url ?? "/",
    (status, headers, body) => {
      res.writeHead(status, headers);
      res.end(body);
    },
    () => {
      res.writeHead(502);
      res.end();
    },
  );
});
serveForBench(server);
