import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import type { ClusterView } from "../../src/client/coordinator-client.js";
import { openBrowser, pageWithErrors } from "../helpers/browser.js";
import { startEmbedded } from "../helpers/embedded.js";
import { waitFor } from "../helpers/wait.js";

const until = (check: () => Promise<boolean>, what: string): Promise<unknown> =>
  waitFor(check, { timeoutMs: 30_000, intervalMs: 100, what });

/**
 * The dashboard in a real browser (Debian's Chromium driven by playwright-core) against the embedded cluster as a
 * user starts it: it loads with no console error and a strict CSP, shows every shard and node, follows uploads
 * live, looks a file up, and runs admin actions only with the admin token.
 */
test(
  "dashboard: the embedded cluster at a glance, live, with a file lookup and token-guarded admin actions",
  { timeout: 120_000 },
  async (t) => {
    const { cluster, data } = await startEmbedded(t);
    const ui = /dashboard\s+(http:\S+\/ui)/.exec(cluster.stdout)?.[1];
    assert.ok(ui, `the banner prints the dashboard's URL:\n${cluster.stdout}`);
    const base = ui.slice(0, -"/ui".length);

    const page0 = await fetch(ui);
    assert.equal(page0.status, 200);
    const csp = page0.headers.get("content-security-policy") ?? "";
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|https?:/, "no inline code, no other origin");
    const again = await fetch(ui, { headers: { "if-none-match": page0.headers.get("etag") ?? "" } });
    assert.equal(again.status, 304, "revalidated, not downloaded again");

    const browser = await openBrowser(t);
    const { page, errors } = await pageWithErrors(browser);
    await page.goto(ui);
    await page.waitForSelector("[data-shard]");
    assert.equal(await page.locator("[data-shard]").count(), 3, "every shard");
    assert.equal(await page.locator("#shards tr[data-server]").count(), 6, "every node");
    assert.equal(await page.getByRole("heading", { level: 2 }).count(), 6);
    // The ring: 6 nodes, 2 coordinators and the replicator, each drawn and listed alive.
    await until(
      async () => (await page.locator('#ring li[data-status="alive"]').count()) === 9,
      "nine ring members alive",
    );
    assert.equal(await page.locator("#ring svg g.member.alive").count(), 9);

    // An upload through the API moves the live counters.
    const before = Number(await page.locator("#uploads-ok").textContent());
    let address = "";
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${base}/dash/${i}.txt`, { method: "PUT", body: `file ${i}` });
      assert.equal(res.status, 200);
      address = `${((await res.json()) as { shard_id: string }).shard_id}:dash/${i}.txt`;
    }
    await until(
      async () => Number(await page.locator("#uploads-ok").textContent()) >= before + 5,
      "the counters moved",
    );

    // A file looked up by address: every node of its shard holds a verified copy (once the copy is made).
    await page.getByLabel("Address (shard:key)").fill(address);
    await page.getByRole("button", { name: "Look up" }).click();
    await page.waitForSelector("#lookup-result tr[data-server]");
    assert.match((await page.locator("#lookup-result").textContent()) ?? "", /6 bytes/);
    await until(async () => {
      await page.getByRole("button", { name: "Look up" }).click();
      await page.waitForTimeout(300);
      return (await page.locator("#lookup-result .badge.ok").count()) === 2;
    }, "two verified copies");

    const adminSays = (re: RegExp): Promise<unknown> =>
      until(async () => re.test((await page.locator("#admin-result").textContent()) ?? ""), String(re));
    const shard2 = async (): Promise<boolean | undefined> =>
      ((await (await fetch(`${base}/cluster`)).json()) as ClusterView).shards.find((s) => s.id === "2")
        ?.enabled;
    await page.getByLabel("Shard", { exact: true }).selectOption("2");
    // Without the token: refused, nothing changed.
    await page.getByRole("button", { name: "Disable shard" }).click();
    await adminSays(/refused/);
    assert.match((await page.locator("#admin-result").textContent()) ?? "", /Bearer/);
    assert.equal(await shard2(), true, "still writable");
    await page.getByLabel("Admin token", { exact: true }).fill("not the token");
    await page.getByRole("button", { name: "Disable shard" }).click();
    await adminSays(/not valid/);
    assert.equal(await shard2(), true, "still writable");
    // With it: read-only in the cluster map, shown so, and back.
    await page
      .getByLabel("Admin token", { exact: true })
      .fill((await readFile(join(data, "admin-token"), "utf8")).trim());
    await page.getByRole("button", { name: "Disable shard" }).click();
    await adminSays(/shard 2 disabled/);
    assert.equal(await shard2(), false, "read-only in the cluster map");
    await page.waitForSelector('[data-shard="2"] .badge.warn:text("read-only")');
    await page.getByRole("button", { name: "Enable shard" }).click();
    await adminSays(/shard 2 enabled/);
    assert.equal(await shard2(), true);

    // Narrow screens: the same page, nothing wider than the viewport.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - window.innerWidth");
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a 390px screen`);
    // The browser logs the two refused admin requests (401 without a token, 403 with a wrong one); nothing else.
    const unexpected = errors.filter((e) => !/status of 40[13] /.test(e));
    assert.deepEqual(unexpected, [], "no other console error");
    assert.equal(errors.length - unexpected.length, 2);
  },
);
