import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FrameDecoder, FrameError, encodeFrame } from "../../src/ring/transport/frame-codec.js";
import { InboundSession, OutboundSession } from "../../src/ring/transport/session.js";
import type { Message } from "../../src/ring/core/messages.js";
import { seededRandom } from "../../bench/ring-sim/random.js";

const SECRET = Buffer.from("0123456789abcdef0123456789abcdef");
const ping: Message = { t: "ping", from: "a", fa: "127.0.0.1:1", seq: 1, cs: 42 };

/** A client and server session shaken hands; returns the server and a function producing client frames. */
function pair(
  secret: Buffer | undefined,
  serverSecret: Buffer | undefined = secret,
): { server: InboundSession; client: OutboundSession; hello: Buffer } {
  const server = new InboundSession(serverSecret, 64 * 1024);
  const client = new OutboundSession(secret, { id: "a", addr: "127.0.0.1:1" });
  const hello = client.push(server.challenge());
  assert.ok(hello);
  return { server, client, hello };
}

void describe("frame decoder", () => {
  void it("reassembles frames split at every byte boundary", () => {
    const nonce = Buffer.alloc(16, 1);
    const frames = Buffer.concat(
      [1, 2, 3].map((seq) => encodeFrame(seq, Buffer.from(`{"n":${seq}}`), SECRET, nonce)),
    );
    for (let cut = 1; cut < frames.length; cut++) {
      const d = new FrameDecoder(1024, true);
      const got = [...d.push(frames.subarray(0, cut)), ...d.push(frames.subarray(cut))];
      assert.deepEqual(
        got.map((f) => f.seq),
        [1, 2, 3],
      );
    }
  });

  void it("refuses an oversized frame before buffering it", () => {
    const d = new FrameDecoder(1000, false);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(50_000_000);
    assert.throws(
      () => d.push(header),
      (e: unknown) => e instanceof FrameError && e.fault === "oversized",
    );
  });
});

void describe("sessions", () => {
  void it("carries messages after the handshake and checks the sender", () => {
    const { server, client, hello } = pair(SECRET);
    assert.deepEqual(server.push(hello), []);
    assert.deepEqual(server.peer, { id: "a", addr: "127.0.0.1:1" });
    assert.deepEqual(server.push(client.encode(ping)), [ping]);
    assert.throws(
      () => server.push(client.encode({ ...ping, from: "mallory" })),
      (e: unknown) => (e as FrameError).fault === "invalid",
    );
  });

  void it("refuses a peer with another secret, both ways", () => {
    const wrong = Buffer.from("another-secret-another-secret!!!");
    const server = new InboundSession(SECRET, 1024);
    const client = new OutboundSession(wrong, { id: "a", addr: "h:1" });
    assert.throws(
      () => client.push(server.challenge()),
      (e: unknown) => (e as FrameError).fault === "bad-mac",
    );
    // A server without a secret and a client with one do not understand each other either.
    const open = new InboundSession(undefined, 1024);
    assert.throws(
      () => new OutboundSession(SECRET, { id: "a", addr: "h:1" }).push(open.challenge()),
      (e: unknown) => e instanceof FrameError,
    );
    // A client without the secret cannot get its hello past a server that has one.
    const guarded = new InboundSession(SECRET, 1024);
    const nonce = guarded.challenge().subarray(8 + 32);
    const forged = encodeFrame(
      1,
      Buffer.from(JSON.stringify({ t: "hello", id: "a", addr: "h:1" })),
      wrong,
      Buffer.from((JSON.parse(nonce.toString()) as { nonce: string }).nonce, "hex"),
    );
    assert.throws(
      () => guarded.push(forged),
      (e: unknown) => (e as FrameError).fault === "bad-mac",
    );
  });

  void it("refuses a replayed frame", () => {
    const { server, client, hello } = pair(SECRET);
    server.push(hello);
    const frame = client.encode(ping);
    server.push(frame);
    assert.throws(
      () => server.push(frame),
      (e: unknown) => (e as FrameError).fault === "replay",
    );
    // The same frame on a new connection fails too: the nonce differs.
    const other = new InboundSession(SECRET, 1024);
    assert.throws(
      () => other.push(hello),
      (e: unknown) => e instanceof FrameError,
    );
  });

  void it("never throws anything but FrameError on random and mutated input (fuzz)", () => {
    const random = seededRandom(1234);
    let refused = 0;
    let accepted = 0;
    for (let trial = 0; trial < 3000; trial++) {
      for (const secret of [SECRET, undefined]) {
        const { server, client, hello } = pair(secret);
        const gossip: Message = {
          t: "gossip",
          from: "a",
          fa: "h:1",
          upd: [{ id: "x", a: "h:2", i: 1, s: 1 }],
          hops: 2,
        };
        const input = Buffer.concat([hello, client.encode(ping), client.encode(gossip)]);
        const kind = trial % 3;
        if (kind === 0)
          for (let i = 0; i < 1 + random() * 4; i++)
            input[Math.floor(random() * input.length)] = Math.floor(random() * 256);
        const bytes =
          kind === 1
            ? Buffer.from(
                Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)),
              )
            : kind === 2
              ? input.subarray(0, Math.floor(random() * input.length))
              : input;
        try {
          let pos = 0;
          while (pos < bytes.length) {
            const step = 1 + Math.floor(random() * 64);
            for (const m of server.push(bytes.subarray(pos, pos + step))) {
              assert.equal(typeof m.t, "string");
              accepted++;
            }
            pos += step;
          }
        } catch (err) {
          assert.ok(err instanceof FrameError, `unexpected ${String(err)}`);
          refused++;
        }
      }
    }
    assert.ok(refused > 1000, `refused ${refused}`);
    assert.ok(accepted > 0);
  });
});
