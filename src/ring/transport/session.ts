import { randomBytes } from "node:crypto";
import { parseMessage, LIMITS, type Message } from "../core/messages.js";
import { encodeFrame, FrameDecoder, FrameError, parseBody, verifyFrame } from "./frame-codec.js";

/**
 * The two ends of one ring connection, as pure byte-in/messages-out machines (the sockets live in
 * `tcp-transport.ts`, so these can be fuzzed without any).
 *
 *   client (sender)                         server (receiver, the predecessor's successor)
 *        ──── connect ────────────────────────▶
 *        ◀─── frame 0 {challenge, nonce} ─────  (MAC'd with the secret: the client checks the server too)
 *        ──── frame 1 {hello, id, addr} ──────▶  (MAC over nonce: a peer without the secret stops here)
 *        ──── frame 2, 3, ... messages ───────▶  (seq must be exactly previous + 1, from must match hello)
 */
export class InboundSession {
  readonly nonce = randomBytes(16);
  private readonly decoder: FrameDecoder;
  private expectedSeq = 1;
  /** The authenticated peer, once its hello is in. */
  peer: { id: string; addr: string } | undefined;

  constructor(
    private readonly secret: Buffer | undefined,
    maxFrameBytes: number,
  ) {
    this.decoder = new FrameDecoder(maxFrameBytes, secret !== undefined);
  }

  challenge(): Buffer {
    const body = Buffer.from(JSON.stringify({ t: "challenge", nonce: this.nonce.toString("hex") }));
    return encodeFrame(0, body, this.secret, this.nonce);
  }

  /** Messages carried by `chunk`; throws FrameError on the first bad frame (close the connection then). */
  push(chunk: Buffer): Message[] {
    const out: Message[] = [];
    for (const frame of this.decoder.push(chunk)) {
      if (frame.seq !== this.expectedSeq) {
        throw new FrameError("replay", `frame ${frame.seq} out of sequence (expected ${this.expectedSeq})`);
      }
      verifyFrame(frame, this.secret, this.nonce);
      this.expectedSeq++;
      const value = parseBody(frame.body);
      if (!this.peer) {
        this.peer = parseHello(value);
        continue;
      }
      const msg = parseMessage(value);
      if (!msg) throw new FrameError("invalid", "message of an unknown shape");
      if (msg.from !== this.peer.id) throw new FrameError("invalid", "message sender differs from the hello");
      out.push(msg);
    }
    return out;
  }
}

export class OutboundSession {
  private readonly decoder: FrameDecoder;
  private nonce: Buffer | undefined;
  private seq = 1;

  constructor(
    private readonly secret: Buffer | undefined,
    private readonly self: { id: string; addr: string },
  ) {
    this.decoder = new FrameDecoder(1024, secret !== undefined);
  }

  get ready(): boolean {
    return this.nonce !== undefined;
  }

  /** Feeds bytes from the server; returns the hello frame once the challenge is verified. */
  push(chunk: Buffer): Buffer | undefined {
    for (const frame of this.decoder.push(chunk)) {
      if (this.nonce) throw new FrameError("invalid", "unexpected frame from the server");
      if (frame.seq !== 0) throw new FrameError("replay", "challenge out of sequence");
      const value = parseBody(frame.body) as { t?: unknown; nonce?: unknown } | null;
      if (
        value?.t !== "challenge" ||
        typeof value.nonce !== "string" ||
        !/^[0-9a-f]{32}$/.test(value.nonce)
      ) {
        throw new FrameError("invalid", "bad challenge");
      }
      const nonce = Buffer.from(value.nonce, "hex");
      verifyFrame(frame, this.secret, nonce);
      this.nonce = nonce;
      return this.encodeBody(Buffer.from(JSON.stringify({ t: "hello", ...this.self })));
    }
    return undefined;
  }

  encode(msg: Message): Buffer {
    return this.encodeBody(Buffer.from(JSON.stringify(msg)));
  }

  encodeBody(body: Buffer): Buffer {
    if (!this.nonce) throw new Error("session not ready");
    return encodeFrame(this.seq++, body, this.secret, this.nonce);
  }
}

function parseHello(v: unknown): { id: string; addr: string } {
  const h = v as { t?: unknown; id?: unknown; addr?: unknown } | null;
  if (
    h?.t !== "hello" ||
    typeof h.id !== "string" ||
    typeof h.addr !== "string" ||
    h.id.length === 0 ||
    h.id.length > LIMITS.idChars ||
    h.addr.length === 0 ||
    h.addr.length > LIMITS.addrChars
  ) {
    throw new FrameError("invalid", "the first frame is not a hello");
  }
  return { id: h.id, addr: h.addr };
}
