import type { IncomingMessage, ServerResponse } from "node:http";
import { BackpackError } from "../common/errors.js";
import { sendError, sendJson } from "../common/http.js";
import type { RingView } from "./ring-member.js";

/** Anything that can show a ring view (a RingMember, or a test double of one in the dashboard's tests). */
export interface RingViewSource {
  view(): RingView;
}

/**
 * An HTTP handler for `GET /ring` that a service mounts next to its own routes: it answers and returns true
 * for its path, returns false for any other so the service handles it. The body is the `RingView`: members
 * and their status, the K ring orders, lap time, tick, checksum, transport counters.
 */
export function createRingViewHandler(
  source: RingViewSource,
  path = "/ring",
): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    if ((q < 0 ? url : url.slice(0, q)) !== path) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendError(res, new BackpackError("METHOD_NOT_ALLOWED", `${path} answers GET only`));
      return true;
    }
    try {
      sendJson(res, 200, source.view());
    } catch (err) {
      sendError(res, err);
    }
    return true;
  };
}
