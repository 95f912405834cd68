import type { Dispatcher } from "undici";
import { BackpackError } from "../common/errors.js";

/** Answers to a copy's write that mean "this node cannot take writes now", not "this copy failed". */
const UNAVAILABLE_STATUS = new Set([
  503, // OVERLOADED, SHUTTING_DOWN
  507, // NO_SPACE: the disk is full
]);

/** The start of the node's JSON error body kept for the message. */
const MAX_BODY_CHARS = 512;

/**
 * An interceptor for the replicator's writes (PUT, DELETE) to target nodes: a node that answers 507 (disk
 * full) or 503 (overloaded, stopping) fails the request the way a node that is away does (an UPSTREAM_FAILED
 * without an HTTP status), so the copier reports the target down, the target is paused with backoff and its
 * tasks wait without spending attempts until it takes writes again. Other answers pass through untouched.
 *
 * TODO(hardening, item 1): once the copier classifies NO_SPACE / OVERLOADED / SHUTTING_DOWN of its own
 * target write as `target-down`, this interceptor can go.
 */
export const unavailableTarget: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (options, handler) =>
  options.method === "PUT" || options.method === "DELETE"
    ? dispatch(options, new UnavailableTargetHandler(handler, `${options.method} ${originOf(options)}`))
    : dispatch(options, handler);

class UnavailableTargetHandler implements Dispatcher.DispatchHandler {
  private refused: number | undefined;
  private body = "";

  constructor(
    private readonly next: Dispatcher.DispatchHandler,
    private readonly what: string,
  ) {}

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.next.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[]>,
    socket: import("node:stream").Duplex,
  ): void {
    this.next.onRequestUpgrade?.(controller, statusCode, headers, socket);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    if (UNAVAILABLE_STATUS.has(statusCode)) {
      this.refused = statusCode;
      return;
    }
    this.next.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.refused === undefined) {
      this.next.onResponseData?.(controller, chunk);
      return;
    }
    if (this.body.length < MAX_BODY_CHARS) this.body += chunk.toString("utf8", 0, MAX_BODY_CHARS);
  }

  onResponseEnd(
    controller: Dispatcher.DispatchController,
    trailers: Record<string, string | string[]>,
  ): void {
    if (this.refused === undefined) {
      this.next.onResponseEnd?.(controller, trailers);
      return;
    }
    const err = new BackpackError(
      "UPSTREAM_FAILED",
      `${this.what} cannot take writes now (${this.refused}${codeOf(this.body)})`,
      { details: { node_status: this.refused } },
    );
    this.next.onResponseError?.(controller, err);
  }

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    this.next.onResponseError?.(controller, err);
  }
}

function originOf(options: Dispatcher.DispatchOptions): string {
  return `${typeof options.origin === "string" ? options.origin : (options.origin?.origin ?? "")}${options.path}`;
}

/** ` CODE` from a node's JSON error body, or empty. */
function codeOf(body: string): string {
  try {
    const code = (JSON.parse(body) as { code?: unknown }).code;
    return typeof code === "string" ? ` ${code}` : "";
  } catch {
    return "";
  }
}
