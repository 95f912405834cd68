import type { TestContext } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";

/** Debian's Chromium (the `chromium` package): no browser is downloaded. */
export const CHROMIUM = "/usr/bin/chromium";

/**
 * A headless Chromium for one test, closed after it (also when it fails). Started with the flags this machine's
 * closed network needs (no background connections, no component updates).
 */
export async function openBrowser(t: Pick<TestContext, "after">): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  t.after(() => browser.close());
  return browser;
}

/** A page that records every console error and uncaught exception, to assert there were none. */
export async function pageWithErrors(
  browser: Browser,
  viewport = { width: 1280, height: 900 },
): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport });
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  return { page, errors };
}
