import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Frames of the ring's TCP protocol:
 *
 *   [u32 length of the rest][u32 seq][32-byte HMAC-SHA256, only with a cluster secret][JSON body]
 *
 * The MAC covers the connection's nonce (chosen by the accepting side), the sequence number and the body,
 * so a frame cannot be altered, moved to another connection or replayed within one (sequence numbers must
 * increase by exactly one: TCP keeps order, so anything else is an injected or replayed frame).
 */
export const MAC_BYTES = 32;
export const HEADER_BYTES = 8;

export type FrameFault = "oversized" | "malformed" | "bad-mac" | "replay" | "invalid";

export class FrameError extends Error {
  constructor(
    readonly fault: FrameFault,
    message: string,
  ) {
    super(message);
    this.name = "FrameError";
  }
}

export interface Frame {
  seq: number;
  mac: Buffer | undefined;
  body: Buffer;
}

export function frameMac(secret: Buffer, nonce: Buffer, seq: number, body: Buffer): Buffer {
  const s = Buffer.allocUnsafe(4);
  s.writeUInt32BE(seq >>> 0);
  return createHmac("sha256", secret).update(nonce).update(s).update(body).digest();
}

export function encodeFrame(seq: number, body: Buffer, secret: Buffer | undefined, nonce: Buffer): Buffer {
  const macLen = secret ? MAC_BYTES : 0;
  const out = Buffer.allocUnsafe(HEADER_BYTES + macLen + body.length);
  out.writeUInt32BE(4 + macLen + body.length, 0);
  out.writeUInt32BE(seq >>> 0, 4);
  if (secret) frameMac(secret, nonce, seq, body).copy(out, HEADER_BYTES);
  body.copy(out, HEADER_BYTES + macLen);
  return out;
}

/** Checks a frame's MAC (when there is a secret); throws FrameError("bad-mac"). */
export function verifyFrame(frame: Frame, secret: Buffer | undefined, nonce: Buffer): void {
  if (!secret) return;
  const expected = frameMac(secret, nonce, frame.seq, frame.body);
  if (!frame.mac || !timingSafeEqual(frame.mac, expected)) {
    throw new FrameError("bad-mac", "frame authentication failed (wrong cluster secret?)");
  }
}

/** Parses a frame body as JSON; throws FrameError("malformed"). */
export function parseBody(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8")) as unknown;
  } catch {
    throw new FrameError("malformed", "frame body is not JSON");
  }
}

/**
 * Splits a byte stream into frames. Pure (no socket): fed chunks of any size, returns whole frames, throws a
 * FrameError on the first bad one, after which the connection must be closed. Never buffers more than one
 * frame of at most `maxFrameBytes`.
 */
export class FrameDecoder {
  private buf: Buffer = Buffer.alloc(0);

  constructor(
    private readonly maxFrameBytes: number,
    private readonly withMac: boolean,
  ) {}

  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const frames: Frame[] = [];
    const min = 4 + (this.withMac ? MAC_BYTES : 0);
    while (this.buf.length >= 4) {
      const len = this.buf.readUInt32BE(0);
      if (len > this.maxFrameBytes)
        throw new FrameError("oversized", `frame of ${len} bytes is over the limit`);
      if (len < min) throw new FrameError("malformed", `frame of ${len} bytes is too short`);
      if (this.buf.length < 4 + len) break;
      const seq = this.buf.readUInt32BE(4);
      const macEnd = HEADER_BYTES + (this.withMac ? MAC_BYTES : 0);
      const mac = this.withMac ? Buffer.from(this.buf.subarray(HEADER_BYTES, macEnd)) : undefined;
      const body = Buffer.from(this.buf.subarray(macEnd, 4 + len));
      frames.push({ seq, mac, body });
      this.buf = this.buf.subarray(4 + len);
    }
    return frames;
  }

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.buf.length;
  }
}
