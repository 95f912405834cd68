import assert from "node:assert/strict";
import { after, test } from "node:test";
import { ChaosCluster, SHARDS } from "../helpers/chaos-cluster.js";
import { openBrowser, pageWithErrors } from "../helpers/browser.js";
import { waitFor } from "../helpers/wait.js";

/**
 * The dashboard of a distributed cluster (ZooKeeper, 2 Redis, 4 nodes in 2 shards, 2 coordinators started by
 * their commands, a replicator comparing every second) in Debian's Chromium: every shard and node shown, an
 * upload moves the counters, a storage node SIGKILLed is shown down where it stands (and dead in the ring) and ok
 * again once restarted; the ring shows every process.
 */
const t0 = performance.now();
const hooks = { after: (fn: () => unknown) => after(async () => void (await fn())) };
const cluster = await ChaosCluster.start(hooks, () => performance.now() - t0, {
  replicatorArgs: ["--repair-every", "1s"],
});

test(
  "dashboard of a distributed cluster: nodes, shards, live counters, a killed node shown down and back",
  { timeout: 120_000 },
  async (t) => {
    const browser = await openBrowser(t);
    const { page, errors } = await pageWithErrors(browser);
    await page.goto(`${cluster.coordinatorUrl(1)}/ui`);
    await page.waitForSelector("[data-shard]");
    assert.equal(await page.locator("[data-shard]").count(), Object.keys(SHARDS).length);
    assert.equal(await page.locator("#shards tr[data-server]").count(), Object.values(SHARDS).flat().length);

    // The ring: 4 nodes, 2 coordinators and the replicator, each alive, this coordinator marked.
    const members = page.locator("#ring li[data-member]");
    await waitFor(async () => (await page.locator('#ring li[data-status="alive"]').count()) === 7, {
      timeoutMs: 15_000,
      what: "seven ring members alive",
    });
    assert.equal(await members.count(), 7);
    assert.equal(await page.locator("#ring li", { hasText: "(this coordinator)" }).count(), 1);

    const before = Number(await page.locator("#uploads-ok").textContent());
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${cluster.coordinatorUrl(1)}/dist/${i}`, { method: "PUT", body: `d${i}` });
      assert.equal(res.status, 200);
    }
    await waitFor(async () => Number(await page.locator("#uploads-ok").textContent()) >= before + 3, {
      timeoutMs: 10_000,
      what: "the upload counter moved",
    });

    const victim = "3";
    const row = page.locator(`#shards tr[data-server="${victim}"]`);
    const state = async (): Promise<string> => (await row.locator(".badge").textContent()) ?? "";
    await cluster.kill({ role: "node", id: victim });
    const killedAt = performance.now();
    await waitFor(async () => (await state()).startsWith("down"), {
      timeoutMs: 15_000,
      what: `node ${victim} shown down`,
    });
    const ringEntry = page.locator("#ring li", { hasText: cluster.nodeUrl(victim) });
    await waitFor(async () => (await ringEntry.getAttribute("data-status")) === "dead", {
      timeoutMs: 15_000,
      what: `node ${victim} dead in the ring`,
    });
    t.diagnostic(
      `shown dead in the ring ${((performance.now() - killedAt) / 1000).toFixed(1)} s after the SIGKILL`,
    );
    assert.equal(
      await row.locator(".badge.bad").count(),
      1,
      "marked as down by shape and label, not colour alone",
    );
    await cluster.restart({ role: "node", id: victim });
    await waitFor(async () => (await state()) === "ok", {
      timeoutMs: 30_000,
      what: `node ${victim} shown ok`,
    });
    await waitFor(async () => (await page.locator('#ring li[data-status="alive"]').count()) === 7, {
      timeoutMs: 15_000,
      what: "the restarted node alive in the ring again",
    });
    assert.deepEqual(errors, [], "no console errors");
  },
);
