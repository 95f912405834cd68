// `npm run docs:screenshots`: starts an embedded cluster in a temp dir, sends it some traffic, and saves the
// dashboard at 1280 and 390 px wide as docs/dashboard-wide.png and docs/dashboard-narrow.png (Debian's Chromium).
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const dir = await mkdtemp(join(tmpdir(), "backpack-shots-"));
const cluster = spawn(
  process.execPath,
  ["dist/src/cli/bin/backpack.js", "dev", "--data", join(dir, "data"), "--port", "0"],
  {
    stdio: ["ignore", "pipe", "inherit"],
  },
);
let out = "";
await new Promise((resolve) =>
  cluster.stdout.on("data", (d) => (out += d) && /backpack is ready/.test(out) && resolve()),
);
const ui = /dashboard\s+(http:\S+\/ui)/.exec(out)[1];
const base = ui.slice(0, -3);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const end = Date.now() + 12_000;
  let n = 0;
  while (Date.now() < end) {
    const res = await fetch(`${base}/photos/${n++}.jpg`, {
      method: "PUT",
      body: Buffer.alloc(2000 + (n % 50) * 400, n),
    });
    const { shard_id: shard } = await res.json();
    if (n % 3 === 0) await (await fetch(`${base}/${shard}:photos/${n - 1}.jpg`)).arrayBuffer();
    await new Promise((r) => setTimeout(r, 15));
  }
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(ui);
  await page.waitForSelector("[data-shard]");
  await page.waitForTimeout(2500);
  await page.screenshot({ path: "docs/dashboard-wide.png", fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(1500);
  await page.screenshot({ path: "docs/dashboard-narrow.png", fullPage: true });
  console.log("saved docs/dashboard-wide.png and docs/dashboard-narrow.png");
} finally {
  await browser.close();
  cluster.kill("SIGINT");
  await new Promise((r) => cluster.once("exit", r));
  await rm(dir, { recursive: true, force: true });
}
