import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Agent } from "undici";
import { createAgent } from "../client/http-agent.js";
import { CoordinatorClient } from "../client/coordinator-client.js";
import type { ClusterMap } from "../cluster/types.js";
import { BackpackError } from "../common/errors.js";
import { closeServer, listen } from "../common/http.js";
import type { Logger } from "../common/logger.js";
import type { Service } from "../common/service.js";
import type { S3FrontConfig } from "./config.js";
import type { S3Context, S3Request } from "./context.js";
import { S3Error } from "./errors.js";
import { ObjectStore } from "./object-store.js";
import { sendS3Error } from "./respond.js";
import { route } from "./router.js";
import { expectedSignature, parseQuery, parseSignature, sameSignature, uriDecode } from "./sigv4.js";
import { UploadSweeper } from "./upload-sweeper.js";

export interface S3Deps {
  map: ClusterMap;
  /** The coordinator this front sends every file operation to (its own process's). */
  coordinatorUrl: () => string;
  /** The coordinator's write token, if it has one. */
  writeToken?: string;
  log: Logger;
  now?: () => number;
}

/**
 * The S3 front (docs/s3.md): its own listener, SigV4 on every request, S3's operations over the coordinator's
 * native API. Stateless: every coordinator's front can serve every request.
 */
export class S3Service implements Service {
  private server: Server | undefined;
  private baseUrl: string | undefined;
  private stopping = false;
  private readonly agent: Agent;
  private readonly ctx: S3Context;
  private readonly sweeper: UploadSweeper;

  constructor(
    readonly config: Readonly<S3FrontConfig>,
    private readonly deps: S3Deps,
  ) {
    this.agent = createAgent();
    const now = deps.now ?? Date.now;
    const client = new CoordinatorClient(this.agent, { token: deps.writeToken, timeoutMs: 120_000 });
    this.ctx = {
      config,
      map: deps.map,
      store: new ObjectStore(client, deps.coordinatorUrl, deps.map, now),
      log: deps.log,
      now,
    };
    this.sweeper = new UploadSweeper(this.ctx);
  }

  get url(): string {
    if (this.baseUrl === undefined) throw new BackpackError("NOT_INITIALIZED", "the S3 front is not started");
    return this.baseUrl;
  }

  async start(): Promise<void> {
    // No overall request timeout: a 5 GiB part takes what it takes (the coordinator bounds silences).
    const server = createServer(
      { requestTimeout: 0, headersTimeout: 20_000 },
      (req, res) => void this.handle(req, res),
    );
    this.server = server;
    this.baseUrl = await listen(server, this.config.host, this.config.port);
    this.sweeper.start();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.sweeper.stop();
    if (this.server) await closeServer(this.server);
    await this.agent.close();
  }

  /** One sweep of old uploads now (tests, operators); resolves with the uploads removed. */
  sweepUploads(): Promise<number> {
    return this.sweeper.sweep();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomBytes(8).toString("hex").toUpperCase();
    const target = req.url ?? "/";
    const q = target.indexOf("?");
    const rawPath = q === -1 ? target : target.slice(0, q);
    try {
      if (this.stopping) throw new S3Error("ServiceUnavailable", "the server is stopping");
      const query = parseQuery(q === -1 ? "" : target.slice(q + 1));
      const r = this.authenticate(req, res, rawPath, query, requestId);
      await route(this.ctx, r);
    } catch (err) {
      // A refusal before the body was read: the rest of it is not read either.
      if (!req.complete && !res.headersSent) res.setHeader("connection", "close");
      sendS3Error(res, err, { resource: rawPath, requestId, head: req.method === "HEAD" }, this.ctx.log);
    }
  }

  private authenticate(
    req: IncomingMessage,
    res: ServerResponse,
    rawPath: string,
    query: [string, string][],
    requestId: string,
  ): S3Request {
    const signed = parseSignature(req.headers, query, this.ctx.now());
    if (signed === undefined) throw new S3Error("AccessDenied", "Access Denied (the request is not signed)");
    const keys = this.ctx.map.snapshot().s3.keys;
    const key = Object.hasOwn(keys, signed.accessKeyId) ? keys[signed.accessKeyId] : undefined;
    if (key === undefined) {
      throw new S3Error(
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
      );
    }
    const want = expectedSignature(
      { method: req.method ?? "GET", rawPath, query, headers: req.headers },
      signed,
      key.secret,
    );
    if (!sameSignature(signed.signature, want)) {
      throw new S3Error(
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
      );
    }
    const { bucketName, objectKey } = this.address(req, rawPath);
    return { req, res, query: new Map(query), key, signed, bucketName, objectKey, requestId };
  }

  /** Bucket and key: from the Host (virtual-host style under --s3-domain) or the path. */
  private address(req: IncomingMessage, rawPath: string): { bucketName?: string; objectKey?: string } {
    const path = uriDecode(rawPath);
    const host = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
    const domain = this.config.domain?.toLowerCase();
    if (domain !== undefined && host.endsWith(`.${domain}`)) {
      const key = path.slice(1);
      return { bucketName: host.slice(0, -(domain.length + 1)), objectKey: key === "" ? undefined : key };
    }
    const rest = path.slice(1);
    if (rest === "") return {};
    const slash = rest.indexOf("/");
    if (slash === -1 || slash === rest.length - 1)
      return { bucketName: slash === -1 ? rest : rest.slice(0, -1) };
    return { bucketName: rest.slice(0, slash), objectKey: rest.slice(slash + 1) };
  }
}
