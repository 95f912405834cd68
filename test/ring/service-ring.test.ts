import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { OriginSockets, createAgent } from "../../src/client/http-agent.js";
import { LeanClient } from "../../src/client/lean-client.js";
import { ringMemberConfig } from "../../src/ring/config.js";
import { RingMember } from "../../src/ring/ring-member.js";
import { advertiseOf } from "../../src/ring/service-ring.js";
import { encodeFrame } from "../../src/ring/transport/frame-codec.js";
import { OutboundSession } from "../../src/ring/transport/session.js";
import { RING_PROTOCOL } from "../../src/ring/transport/tcp-transport.js";
import { TargetGate } from "../../src/replicator/target-gate.js";
import { startProcess, type ChildHandle } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { freePort, waitFor } from "../helpers/wait.js";
import { request } from "undici";
import { createServer } from "node:http";
import { closeServer, listen } from "../../src/common/http.js";

const SECRET = "the-cluster-secret-of-this-test";

interface Transport {
  members: { id: string; status: string; role: string; url: string; meta: Record<string, string> }[];
  transport: { rejected: Record<"bad-mac" | "replay", number> };
}

async function ringOf(url: string): Promise<Transport> {
  return (await (await fetch(`${url}/ring`)).json()) as Transport;
}

/** A raw ring connection to `url`'s HTTP port: upgraded, with the server's challenge frame read. */
async function upgraded(url: string): Promise<{ socket: Socket; challenge: Buffer }> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname);
  socket.write(`GET /ring HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: ${RING_PROTOCOL}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  const challenge = await new Promise<Buffer>((resolve, reject) => {
    socket.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end === -1) return;
      assert.match(buf.toString("latin1", 0, end), /^HTTP\/1\.1 101 /);
      const rest = buf.subarray(end + 4);
      if (rest.length >= 4 && rest.length >= 4 + rest.readUInt32BE(0)) resolve(rest);
    });
    socket.on("error", reject);
  });
  socket.removeAllListeners("data");
  return { socket, challenge };
}

void describe("the ring on a service's HTTP port", () => {
  void it("authenticates with the cluster secret: a forged hello and a replayed frame are refused and counted; a member with another secret stays out", async (t) => {
    const dir = await tempDir(t);
    const secretFile = join(dir, "secret");
    await writeFile(secretFile, `${SECRET}\n`);
    const node = await startProcess(t, {
      command: "backpack",
      args: [join(dir, "data"), "127.0.0.1", "0", "--ring-secret-file", secretFile],
    });

    // Forged: a hello whose MAC was made with another secret.
    const forged = await upgraded(node.url);
    const nonce = Buffer.from(
      (JSON.parse(forged.challenge.subarray(8 + 32).toString("utf8")) as { nonce: string }).nonce,
      "hex",
    );
    const hello = Buffer.from(JSON.stringify({ t: "hello", id: "intruder:1", addr: "127.0.0.1:1" }));
    forged.socket.write(encodeFrame(1, hello, Buffer.from("not-the-cluster-secret-at-all"), nonce));
    await waitFor(async () => (await ringOf(node.url)).transport.rejected["bad-mac"] >= 1, {
      what: "the forged frame counted",
    });
    forged.socket.destroy();

    // Replayed: a correct hello sent twice on its connection.
    const replayed = await upgraded(node.url);
    const session = new OutboundSession(Buffer.from(SECRET), { id: "replayer:1", addr: "127.0.0.1:1" });
    const frame = session.push(replayed.challenge);
    assert.ok(frame, "the challenge verifies with the right secret");
    replayed.socket.write(Buffer.concat([frame, frame]));
    await waitFor(async () => (await ringOf(node.url)).transport.rejected.replay >= 1, {
      what: "the replayed frame counted",
    });
    replayed.socket.destroy();

    // A member with another secret, seeded to the node, never becomes a member.
    const intruder = new RingMember(
      ringMemberConfig({
        periodMs: 100,
        probeTimeoutMs: 60,
        secret: "some-other-secret-entirely",
        seeds: [advertiseOf(node.url)],
      }),
    );
    t.after(() => intruder.stop());
    await intruder.start();
    await waitFor(() => intruder.view().transport.rejected["bad-mac"] > 0, { what: "the intruder refused" });
    const view = await ringOf(node.url);
    assert.deepEqual(
      view.members.map((m) => m.role),
      ["node"],
      "the node's ring holds only itself",
    );
  });

  void it("is off with --no-ring: GET /ring answers 404 JSON and ring connections are refused", async (t) => {
    const dir = await tempDir(t);
    const node = await startProcess(t, {
      command: "backpack",
      args: [join(dir, "data"), "127.0.0.1", "0", "--no-ring"],
    });
    const res = await fetch(`${node.url}/ring`);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { code: string }).code, "NOT_FOUND");
    const member = new RingMember(
      ringMemberConfig({ periodMs: 100, probeTimeoutMs: 60, seeds: [advertiseOf(node.url)] }),
    );
    t.after(() => member.stop());
    await member.start();
    await waitFor(
      () => member.view().transport.connectFailures + member.view().transport.rejected.invalid > 0,
      {
        what: "the connection refused",
      },
    );
    assert.equal(member.members().length, 1);
  });
});

void describe("cutting the connections to a node", () => {
  void it("fails the requests in flight on an agent's and the lean client's connections at once", async (t) => {
    // A server that never answers: a frozen node.
    const server = createServer(() => undefined);
    t.after(() => closeServer(server, 0));
    const url = await listen(server, "127.0.0.1", 0);
    const sockets = new OriginSockets();
    const agent = createAgent({ sockets });
    t.after(() => agent.destroy());
    const lean = new LeanClient();
    t.after(() => lean.destroy());
    const put = request(`${url}/k`, { method: "PUT", body: "x", dispatcher: agent, headersTimeout: 60_000 });
    // An upload and a read through the lean client, as a coordinator sends them.
    const upload = lean.request({
      method: "PUT",
      origin: url,
      path: "/u",
      body: Buffer.from("x"),
      timeoutMs: 60_000,
      bufferBytes: 1024,
    });
    const get = lean.request({
      method: "GET",
      origin: url,
      path: "/k",
      timeoutMs: 60_000,
      bufferBytes: 1024,
    });
    const authority = new URL(url).host;
    await waitFor(() => sockets.cut(authority) > 0, { what: "the agent's connection open" });
    await assert.rejects(put);
    let cut = 0;
    await waitFor(() => (cut += lean.cut(authority, "frozen")) >= 2, {
      what: "the lean client's connections open",
    });
    for (const p of [upload, get])
      await assert.rejects(p, (err: { code?: string }) => err.code === "UPSTREAM_FAILED");
  });
});

void describe("a target the ring holds down", () => {
  void it("is paused while held, with pauses that grow to 5 s at most, and free at once when released", () => {
    const gate = new TargetGate(8, 500, 30_000);
    gate.setHeld("n1", true, 0);
    assert.equal(gate.downFor("n1", 0), 500);
    let now = 500;
    const pauses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const p = gate.downFor("n1", now);
      pauses.push(p);
      now += p;
    }
    assert.deepEqual(pauses, [1000, 2000, 4000, 5000, 5000, 5000]);
    gate.setHeld("n1", false, now);
    assert.equal(gate.downFor("n1", now), 0);
    assert.equal(gate.downFor("n2", now), 0);
  });
});

void describe("supervisor mode (--respawn-neighbours)", () => {
  void it("restarts a node SIGKILLed on this host from its ring neighbour, with its own command line", async (t) => {
    const dir = await tempDir(t);
    const secretFile = join(dir, "secret");
    await writeFile(secretFile, `${SECRET}\n`);
    const ports = [await freePort(), await freePort()];
    const start = (i: number): Promise<ChildHandle> =>
      startProcess(t, {
        command: "backpack",
        args: [
          join(dir, `node-${i}`),
          "127.0.0.1",
          String(ports[i]),
          "--respawn-neighbours",
          "--ring-secret-file",
          secretFile,
          "--ring-seeds",
          `127.0.0.1:${ports[1 - i]}`,
        ],
      });
    const [a, b] = [await start(0), await start(1)];
    const pidOf = async (): Promise<string | undefined> =>
      (await ringOf(b.url)).members.find((m) => m.url === a.url && m.status === "alive")?.meta.pid;
    t.after(async () => {
      // The restarted node is no child of this test: stopped by its pid, which it announces itself.
      const self = await ringOf(a.url).catch(() => undefined);
      const pid = Number(self?.members.find((m) => m.url === a.url)?.meta.pid);
      if (pid > 0 && pid !== a.pid) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Gone already.
        }
      }
    });
    const first = await waitFor(pidOf, { timeoutMs: 30_000, what: "both nodes in the ring" });
    assert.equal(await a.kill("SIGKILL"), null);
    const second = await waitFor(async () => ((await pidOf()) ?? first) !== first && (await pidOf()), {
      timeoutMs: 60_000,
      what: "the killed node restarted by its neighbour and alive again",
    });
    assert.notEqual(second, first);
    assert.equal((await fetch(`${a.url}/healthz`)).status, 200, "it serves on its own port again");
  });
});
