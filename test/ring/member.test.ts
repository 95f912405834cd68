import assert from "node:assert/strict";
import { createServer, request } from "node:http";
import { connect } from "node:net";
import { describe, it, type TestContext } from "node:test";
import { listen, closeServer } from "../../src/common/http.js";
import { ringMemberConfig, type RingMemberConfig } from "../../src/ring/config.js";
import { RingMember } from "../../src/ring/ring-member.js";
import { createRingViewHandler } from "../../src/ring/ring-view.js";
import { RING_PROTOCOL } from "../../src/ring/transport/tcp-transport.js";
import type { RingEvent } from "../../src/ring/core/ring-core.js";
import { waitFor } from "../helpers/wait.js";

const SECRET = "test-secret-0123456789abcdef";

async function startMember(t: TestContext, over: Partial<RingMemberConfig> = {}): Promise<RingMember> {
  const m = new RingMember(
    ringMemberConfig({ periodMs: 100, probeTimeoutMs: 60, tokenHoldMs: 5, secret: SECRET, ...over }),
  );
  t.after(() => m.stop());
  await m.start();
  return m;
}

const aliveCount = (m: RingMember): number => m.members().filter((x) => x.status === "alive").length;

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    request(url, (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }));
    })
      .on("error", reject)
      .end();
  });
}

void describe("ring member over TCP", () => {
  void it("forms a ring, ticks, broadcasts, shows /ring and notices a leave", async (t) => {
    const a = await startMember(t);
    const b = await startMember(t, { seeds: [a.addr] });
    const c = await startMember(t, { seeds: [a.addr] });
    const members = [a, b, c];
    await waitFor(() => members.every((m) => aliveCount(m) === 3), {
      what: "three members alive everywhere",
    });
    await waitFor(() => new Set(members.map((m) => m.view().checksum)).size === 1, {
      what: "equal checksums",
    });
    await waitFor(() => members.every((m) => m.lapTime() !== undefined && m.tick() > 2), {
      what: "the token lapping",
      timeoutMs: 15_000,
    });
    const got: RingEvent[] = [];
    c.onChange((e) => got.push(e));
    const id = a.broadcast({ config: "v2" });
    await waitFor(() => got.some((e) => e.type === "delivered" && e.broadcast.seq === id.seq), {
      what: "delivery",
    });
    assert.equal(a.owner("k"), b.owner("k"));
    assert.deepEqual(a.owners("k", 3).sort(), [a.id, b.id, c.id].sort());

    const http = createServer((req, res) => {
      if (!createRingViewHandler(a)(req, res)) res.writeHead(404).end("{}");
    });
    t.after(() => closeServer(http));
    const url = await listen(http, "127.0.0.1", 0);
    const view = await getJson(`${url}/ring`);
    assert.equal(view.status, 200);
    const body = view.body as { members: unknown[]; rings: string[][]; checksum: string; tick: number };
    assert.equal(body.members.length, 3);
    assert.equal(body.rings.length, 3);
    assert.match(body.checksum, /^[0-9a-f]{8}$/);

    await c.stop();
    await waitFor(() => a.status(c.id)?.status === "left" && b.status(c.id)?.status === "left", {
      what: "c left",
    });
  });

  void it("refuses a peer with the wrong secret and survives garbage on its port", async (t) => {
    const a = await startMember(t);
    const b = await startMember(t, { seeds: [a.addr] });
    const intruder = await startMember(t, { seeds: [a.addr], secret: "some-other-secret-entirely" });
    await waitFor(() => aliveCount(a) === 2 && aliveCount(b) === 2, { what: "a and b together" });
    // The intruder checks the challenge MAC first, so it is the one that sees the mismatch and hangs up.
    await waitFor(() => intruder.view().transport.rejected["bad-mac"] > 0, { what: "the intruder refused" });
    assert.equal(a.status(intruder.id), undefined);
    assert.equal(aliveCount(intruder), 1, "the intruder learned nothing");

    // Garbage instead of HTTP, and after a proper upgrade an oversized length, a too short frame and a half
    // frame on raw sockets: each connection is closed and counted.
    const port = Number(a.addr.split(":")[1]);
    const upgrade = Buffer.from(
      `GET /ring HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${RING_PROTOCOL}\r\n\r\n`,
    );
    for (const bytes of [
      Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 13, 10, 13, 10]),
      Buffer.concat([upgrade, Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2])]),
      Buffer.concat([upgrade, Buffer.from([0, 0, 0, 1, 0, 0, 0, 1])]),
      Buffer.concat([upgrade, Buffer.alloc(3)]),
    ]) {
      await new Promise<void>((resolve) => {
        const s = connect(port, "127.0.0.1", () => s.end(bytes));
        s.on("error", () => resolve());
        s.on("close", () => resolve());
        s.resume();
      });
    }
    await waitFor(() => a.view().transport.rejected.oversized + a.view().transport.rejected.malformed >= 3, {
      what: "bad frames counted",
    });
    const before = b.tick();
    await waitFor(() => b.tick() > before && aliveCount(a) === 2, { what: "the ring still working" });
  });

  void it("reports a member that stops answering as dead, and takes it back", async (t) => {
    const a = await startMember(t);
    const b = await startMember(t, { seeds: [a.addr] });
    const c = await startMember(t, { seeds: [a.addr] });
    await waitFor(() => [a, b, c].every((m) => aliveCount(m) === 3), { what: "three alive" });
    const port = Number(c.addr.split(":")[1]);
    // Simulate a crash in-process: stop without the leave announcement by closing only the transport.
    await (c as unknown as { transport: { close(): Promise<void> } }).transport.close();
    (c as unknown as { stopped: boolean }).stopped = true;
    await waitFor(() => a.status(c.id)?.status === "dead" && b.status(c.id)?.status === "dead", {
      what: "c dead everywhere",
      timeoutMs: 15_000,
    });
    const again = await startMember(t, { port, seeds: [a.addr] });
    await waitFor(() => a.status(again.id)?.status === "alive" && b.status(again.id)?.status === "alive", {
      what: "c back",
      timeoutMs: 15_000,
    });
  });
});
