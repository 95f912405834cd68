import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { PAGE_CSS } from "./page/css.js";
import { ICON_SVG, PAGE_HTML } from "./page/html.js";

/** Nothing but this origin: no inline script or style, no other host (works offline, no CDN). */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset {
  type: string;
  body: Buffer;
  etag: string;
}

function asset(type: string, text: string): Asset {
  const body = Buffer.from(text, "utf8");
  return { type, body, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"` };
}

let assets: Map<string, Asset> | undefined;

/** The page, its script (compiled from page/app.ts by the build) and its style sheet, made once. */
function load(): Map<string, Asset> {
  if (assets) return assets;
  const script = readFileSync(new URL("./page/app.js", import.meta.url), "utf8").replace(
    /\n\/\/# sourceMappingURL=.*$/m,
    "",
  );
  assets = new Map([
    ["/ui", asset("text/html; charset=utf-8", PAGE_HTML)],
    ["/ui/", asset("text/html; charset=utf-8", PAGE_HTML)],
    ["/ui/app.js", asset("text/javascript; charset=utf-8", script)],
    ["/ui/app.css", asset("text/css; charset=utf-8", PAGE_CSS)],
    ["/ui/icon.svg", asset("image/svg+xml", ICON_SVG)],
  ]);
  return assets;
}

/**
 * The dashboard's routes for a coordinator (`CoordinatorDeps.routes`): `/ui` and its two assets, with an ETag
 * (revalidated at each load: `no-cache`, answered 304 while unchanged) and a strict Content-Security-Policy.
 * The data comes from the coordinator's own `GET /status`, `/ring` and `/locate/...`.
 */
export function dashboardRoutes(): (req: IncomingMessage, res: ServerResponse, path: string) => boolean {
  return (req, res, path) => {
    const a = load().get(path);
    if (!a) return false;
    const headers = {
      etag: a.etag,
      "cache-control": "no-cache",
      "content-security-policy": CSP,
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
    };
    if (req.headers["if-none-match"] === a.etag) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    res.writeHead(200, { ...headers, "content-type": a.type, "content-length": a.body.length });
    res.end(req.method === "HEAD" ? undefined : a.body);
    return true;
  };
}
