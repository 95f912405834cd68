import { fork } from "node:child_process";
import { connect, createServer, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { quantile } from "../ring-sim/random.js";

/**
 * The baseline of T12 (token hop vs ping RTT / 2), measured with bare sockets and nothing of the ring: a peer
 * process that stamps what it receives and echoes pings, and this process sending it, every `gapMs`, one
 * 100-byte message one way and one ping (alternating, so the peer is idle for `gapMs / 2` before each). A
 * token hop is a one-way message to a member that has been idle for a while; a ping's round trip ends at a
 * member that sent the ping a moment before. Both clocks are `performance.timeOrigin + performance.now()`
 * (one machine).
 *
 * Run as a script it is the peer: `node wake-baseline.js peer`.
 */
const now = (): number => performance.timeOrigin + performance.now();
const SELF = fileURLToPath(import.meta.url);
const FRAME = 100;

export interface WakeBaseline {
  oneWayUs: number;
  halfRttUs: number;
}

export async function measureWakeBaseline(gapMs: number, rounds: number): Promise<WakeBaseline> {
  const peer = fork(SELF, ["peer"], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  try {
    const oneWay: number[] = [];
    const port = await new Promise<number>((resolve, reject) => {
      peer.on("message", (m: { port?: number; oneWay?: number }) => {
        if (m.port !== undefined) resolve(m.port);
        if (m.oneWay !== undefined) oneWay.push(m.oneWay);
      });
      peer.once("exit", () => reject(new Error("the wake baseline's peer exited")));
    });
    const [oneSocket, pingSocket] = await Promise.all([open(port), open(port)]);
    const rtt: number[] = [];
    let sentAt = 0;
    pingSocket.on("data", () => rtt.push(now() - sentAt));
    for (let i = 0; i < rounds; i++) {
      oneSocket.write(frame("o", now()));
      await sleep(gapMs / 2);
      sentAt = now();
      pingSocket.write(frame("p", sentAt));
      await sleep(gapMs / 2);
    }
    oneSocket.destroy();
    pingSocket.destroy();
    return { oneWayUs: quantile(oneWay, 0.5) * 1000, halfRttUs: (quantile(rtt, 0.5) / 2) * 1000 };
  } finally {
    peer.kill();
  }
}

function frame(kind: string, at: number): string {
  return `${kind} ${at}`.padEnd(FRAME - 1, " ") + "\n";
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1", () => resolve(s));
    s.setNoDelay(true);
    s.once("error", reject);
  });
}

if (process.argv[2] === "peer") {
  const server = createServer((s) => {
    s.setNoDelay(true);
    let pending = "";
    s.on("data", (chunk: Buffer) => {
      const at = now();
      pending += chunk.toString("latin1");
      for (let nl = pending.indexOf("\n"); nl !== -1; nl = pending.indexOf("\n")) {
        const line = pending.slice(0, nl + 1);
        pending = pending.slice(nl + 1);
        if (line.startsWith("o ")) process.send?.({ oneWay: at - Number(line.slice(2).trim()) });
        else s.write(line);
      }
    });
    s.on("error", () => s.destroy());
  });
  server.listen(0, "127.0.0.1", () => {
    const a = server.address();
    process.send?.({ port: typeof a === "object" && a ? a.port : 0 });
  });
  process.on("disconnect", () => process.exit(0));
}
