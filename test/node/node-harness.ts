import { connect } from "node:net";
import { Readable } from "node:stream";
import type { TestContext } from "node:test";
import { request, type Dispatcher } from "undici";
import { nodeConfig, type NodeConfig } from "../../src/node/config.js";
import { NodeService } from "../../src/node/service.js";
import { tempDir } from "../helpers/tmp.js";

/** A started node on port 0 in a temp dir, stopped after the test. */
export async function startNode(
  t: Pick<TestContext, "after">,
  overrides: Partial<NodeConfig> = {},
): Promise<NodeService> {
  const dataDir = overrides.dataDir ?? (await tempDir(t, "backpack-node-"));
  const node = new NodeService(nodeConfig({ dataDir, host: "127.0.0.1", port: 0, ...overrides }), {
    stopGraceMs: 1000,
  });
  await node.start();
  t.after(() => node.stop());
  return node;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text: string;
  json: () => { error?: string; code?: string } & Record<string, unknown>;
}

/** One HTTP request through undici with the whole answer read. */
export async function http(
  base: string,
  path: string,
  options: {
    method?: Dispatcher.HttpMethod;
    headers?: Record<string, string>;
    body?: Buffer | string | AsyncIterable<Uint8Array>;
  } = {},
): Promise<Answer> {
  const res = await request(base + path, {
    method: options.method ?? "GET",
    headers: options.headers,
    body:
      options.body === undefined || typeof options.body === "string" || Buffer.isBuffer(options.body)
        ? options.body
        : Readable.from(options.body),
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  const text = body.toString("utf8");
  return {
    status: res.statusCode,
    headers: res.headers,
    body,
    text,
    json: () => JSON.parse(text) as { error?: string; code?: string } & Record<string, unknown>,
  };
}

export interface RawAnswer {
  /** Undefined when the connection ended without a status line. */
  status: number | undefined;
  head: string;
  body: string;
  /** The server closed the connection (or reset it). */
  closed: boolean;
}

/**
 * Writes raw bytes on a fresh connection (for requests no well-behaved client would send) and reads one
 * answer. `then` can keep writing after the first bytes (slow or aborting clients).
 */
export function raw(
  base: string,
  bytes: Buffer | string,
  then?: (write: (b: Buffer | string) => void, end: () => void) => void,
): Promise<RawAnswer> {
  const url = new URL(base);
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    let data = Buffer.alloc(0);
    let settled = false;
    const settle = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      const text = data.toString("latin1");
      const i = text.indexOf("\r\n\r\n");
      const head = i === -1 ? text : text.slice(0, i);
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      resolve({
        status: m ? Number(m[1]) : undefined,
        head,
        body: i === -1 ? "" : text.slice(i + 4),
        closed,
      });
      socket.destroy();
    };
    socket.on("data", (d: Buffer) => {
      data = Buffer.concat([data, d]);
      const text = data.toString("latin1");
      const i = text.indexOf("\r\n\r\n");
      if (i === -1) return;
      const len = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, i));
      if (len && data.length >= i + 4 + Number(len[1])) {
        // A whole answer; wait for the close only when the server announced one.
        if (!/\r\nconnection: *close/i.test(text.slice(0, i))) settle(false);
      }
    });
    socket.on("error", () => settle(true));
    socket.on("close", () => settle(true));
    socket.write(bytes);
    then?.(
      (b) => {
        if (!socket.destroyed) socket.write(b);
      },
      () => socket.destroy(),
    );
  });
}
