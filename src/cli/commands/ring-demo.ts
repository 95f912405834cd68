import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { readSecretFile } from "../../common/config.js";
import { closeServer, listen, sendError } from "../../common/http.js";
import { BackpackError } from "../../common/errors.js";
import { createLogger } from "../../common/logger.js";
import { ringMemberConfig } from "../../ring/config.js";
import { RingMember } from "../../ring/ring-member.js";
import { createRingViewHandler } from "../../ring/ring-view.js";
import { Respawner, respawnMeta } from "../respawner.js";
import { UsageError } from "../args.js";
import { optInt, optString, type Command, type CommandIo } from "../command.js";
import type { ParsedArgs } from "../args.js";

const BIN = fileURLToPath(new URL("../bin/backpack.js", import.meta.url));

export const command: Command = {
  spec: {
    name: "backpack ring-demo",
    summary:
      "The seed's ring demo: starts one ring member process per port on loopback, each logging the cluster tick and the token's lap time; kill any one and the others report it dead, restart it and it rejoins.",
    positionals: [],
    options: [
      {
        name: "ports",
        type: "string",
        description: "port range of the members, FIRST-LAST",
        default: "3000-3010",
      },
      { name: "host", type: "string", description: "address the members listen on", default: "127.0.0.1" },
      {
        name: "member",
        type: "string",
        description:
          "run ONE member on this port (what the demo starts per port; use it to restart a killed one)",
      },
      {
        name: "seeds",
        type: "string",
        description: "with --member: host:port,... to join through (default: every other port of --ports)",
      },
      {
        name: "http-port",
        type: "string",
        description: "with --member: port of its GET /ring view (0: any)",
        default: "0",
      },
      {
        name: "hold-ms",
        type: "string",
        description: "how long each member holds the token",
        default: "100",
      },
      { name: "period-ms", type: "string", description: "failure-detector probe period", default: "500" },
      { name: "probe-timeout-ms", type: "string", description: "direct ping timeout", default: "300" },
      {
        name: "secret-file",
        type: "string",
        description: "file with the cluster secret: frames are authenticated, peers without it refused",
      },
      {
        name: "no-respawn",
        type: "boolean",
        description: "a dead member is not restarted by its ring neighbour (by default it is, with backoff)",
      },
      {
        name: "respawn-ms",
        type: "string",
        description: "restart a member that died after this many ms (0: leave it dead)",
        default: "0",
      },
    ],
    notes: `
Output (stdout), one line per event of each member:
  PORT: 3004 PID: 41234 STATUS: http://127.0.0.1:40123/ring   started: its process id and its view of the ring
  PORT: 3004 TICK: 17 LAP: 1.12 s MEMBERS: 11 alive        the token passed (the tick is the ring's lap count)
  PORT: 3004 MEMBER: 127.0.0.1:3005 dead                   a member changed status (alive, suspect, dead, left)
  PORT: 3005 EXITED: SIGKILL                               (the demo itself) a member process ended
Logs are JSON lines on stderr.

The members end with the demo: Ctrl-C or SIGTERM makes every one leave and stop, and should the demo itself be
killed (even with SIGKILL), each member notices its parent is gone and stops too. A member restarted by hand
with --member stops once every other member has left (the demo was stopped) instead of ticking alone.

Exit codes: 0 after Ctrl-C (every member leaves and stops), 1 when a member cannot start, 2 on bad arguments.

A member that dies is restarted by its ring neighbour (the live member before it on ring 0, on the same
host) after 0.5 s, doubling to 30 s while it does not come back; the ring closes over it meanwhile and takes
it back when it rejoins. Members restarted this way stop with the demo. --no-respawn turns it off.

Examples:
  backpack ring-demo                                  # 11 members on 127.0.0.1:3000-3010
  kill -9 41234                                       # the member on 3004: the others report it dead, a neighbour restarts it
  backpack ring-demo --no-respawn                     # dead members stay dead
  backpack ring-demo --member 3004 --ports 3000-3010  # start one member by hand; it joins
`,
  },
  async run(args, io) {
    const ports = parsePorts(optString(args, "ports") ?? "3000-3010");
    const member = optString(args, "member");
    if (member !== undefined) return runMember(args, io, ports, parsePort(member, "--member"));
    return runDemo(args, io, ports);
  },
};

async function runMember(args: ParsedArgs, io: CommandIo, ports: number[], port: number): Promise<number> {
  const host = optString(args, "host") ?? "127.0.0.1";
  const seedsText = optString(args, "seeds");
  const seeds = seedsText
    ? seedsText.split(",").filter((s) => s.length > 0)
    : ports.filter((p) => p !== port).map((p) => `${host}:${p}`);
  const secretFile = optString(args, "secret-file");
  const config = ringMemberConfig({
    host,
    port,
    seeds,
    secret: secretFile === undefined ? undefined : readSecretFile(secretFile, "cluster secret"),
    periodMs: optInt(args, "period-ms", 1) ?? 500,
    probeTimeoutMs: optInt(args, "probe-timeout-ms", 1) ?? 300,
    tokenHoldMs: optInt(args, "hold-ms", 0) ?? 100,
  });
  const log = createLogger({ name: "ring" });
  const respawn = args.options["no-respawn"] !== true;
  const ring = new RingMember(
    ringMemberConfig(config, { meta: respawn ? respawnMeta(memberArgv(args, port)) : {} }),
    { log },
  );
  const label = `PORT: ${port}`;
  const stop = new AbortController();
  io.stopSignal.addEventListener("abort", () => stop.abort(), { once: true });
  // Started by the demo: the IPC channel to it closes when the demo ends in any way (SIGKILL included), and the
  // member ends with it. Its stdout is a pipe to the demo then, which may be gone: a write error is not a crash.
  if (process.channel) {
    process.channel.unref();
    process.once("disconnect", () => stop.abort());
    process.stdout.on("error", () => undefined);
  }
  let sawLeave = false;
  ring.onChange((e) => {
    if (e.type === "tick") {
      const lap = e.token.lapMs === undefined ? "-" : `${(e.token.lapMs / 1000).toFixed(2)} s`;
      const alive = ring.members().filter((m) => m.status === "alive").length;
      io.stdout(`${label} TICK: ${e.token.tick} LAP: ${lap} MEMBERS: ${alive} alive\n`);
    } else if (e.type === "member" && e.member.id !== ring.id) {
      io.stdout(`${label} MEMBER: ${e.member.id} ${e.member.status}\n`);
      log.info({ member: e.member.id, status: e.member.status, incarnation: e.member.incarnation }, "member");
      sawLeave ||= e.member.status === "left";
      // The demo was stopped (its members leave): a member restarted by hand goes too, instead of ticking alone.
      if (sawLeave && !stop.signal.aborted && aloneAfterLeaves(ring)) {
        io.stdout(`${label} STOPPING: every other member left\n`);
        stop.abort();
      }
    }
  });
  await ring.start();
  const view = createRingViewHandler(ring);
  const http = createServer((req, res) => {
    if (!view(req, res)) sendError(res, new BackpackError("NOT_FOUND", "only GET /ring here"));
  });
  const url = await listen(http, host, optInt(args, "http-port", 0) ?? 0);
  log.info({ url, ring: ring.url, id: ring.id }, "listening");
  io.stdout(`${label} PID: ${process.pid} STATUS: ${url}/ring\n`);
  // "It can respawn it": this member restarts a dead neighbour (see Respawner), passing on its output.
  const respawner = respawn
    ? new Respawner(ring, log, (child) => {
        child.stdout?.setEncoding("utf8").on("data", (d: string) => io.stdout(d));
        child.stderr?.resume();
      })
    : undefined;
  respawner?.start();
  stopWhenOrphaned(io, stop);
  await new Promise<void>((resolve) => {
    if (stop.signal.aborted) resolve();
    stop.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  respawner?.stop();
  await ring.stop();
  await closeServer(http, 1000);
  return 0;
}

/** No other member is alive or suspect: every one left or died. */
function aloneAfterLeaves(ring: RingMember): boolean {
  return ring.members().every((m) => m.id === ring.id || m.status === "left" || m.status === "dead");
}

async function runDemo(args: ParsedArgs, io: CommandIo, ports: number[]): Promise<number> {
  const host = optString(args, "host") ?? "127.0.0.1";
  const respawnMs = optInt(args, "respawn-ms", 0) ?? 0;
  const pass: string[] = ["--ports", `${ports[0]}-${ports[ports.length - 1]}`, "--host", host];
  for (const name of ["hold-ms", "period-ms", "probe-timeout-ms", "secret-file"]) {
    const v = optString(args, name);
    if (v !== undefined) pass.push(`--${name}`, v);
  }
  if (args.options["no-respawn"] === true) pass.push("--no-respawn");
  const log = createLogger({ name: "ring-demo" });
  const children = new Map<number, ChildProcess>();
  let stopping = false;
  const startChild = (port: number): void => {
    // The IPC channel is how a member knows the demo is gone, however it ended.
    const child = spawn(process.execPath, [BIN, "ring-demo", "--member", String(port), ...pass], {
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      // Members restarted by a neighbour are no children of the demo (no IPC channel): they watch its pid.
      env: { ...process.env, [DEMO_PARENT_ENV]: String(process.pid) },
    });
    children.set(port, child);
    child.stdout?.setEncoding("utf8").on("data", (d: string) => io.stdout(d));
    // Children log JSON on stderr; pass on their warnings and errors only (info is one line per event).
    let partial = "";
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      const lines = (partial + d).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) if (!/"level":(10|20|30),/.test(line)) io.stderr(line + "\n");
    });
    child.once("exit", (code, signal) => {
      if (children.get(port) === child) children.delete(port);
      if (stopping) return;
      io.stdout(`PORT: ${port} EXITED: ${signal ?? code ?? "?"}\n`);
      if (respawnMs > 0)
        setTimeout(() => !stopping && !children.has(port) && startChild(port), respawnMs).unref();
    });
  };
  // While members run, every SIGINT/SIGTERM (a second Ctrl-C included) goes on to them: a signal must never
  // end this process and leave its members behind.
  const forward = (): void => {
    stopping = true;
    for (const child of children.values()) child.kill("SIGTERM");
  };
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  for (const port of ports) startChild(port);
  io.stdout(
    `ring-demo: ${ports.length} members on ${host}:${ports[0]}-${ports[ports.length - 1]} (Ctrl-C stops all).\n` +
      `Each prints "PORT: <port> PID: <pid> STATUS: <url>" as it starts (curl the URL for its view of the ring).\n` +
      `Kill one (kill -9 <pid>) and watch the others report it dead: its ring neighbour restarts it\n` +
      `(or start one yourself: backpack ring-demo --member <port> --ports ${ports[0]}-${ports[ports.length - 1]})\n`,
  );
  log.info({ url: `tcp://${host}:${ports[0]}`, members: ports.length }, "listening");
  await new Promise<void>((resolve) => {
    if (io.stopSignal.aborted) resolve();
    io.stopSignal.addEventListener("abort", () => resolve(), { once: true });
  });
  stopping = true;
  await Promise.all(
    [...children.values()].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const t = setTimeout(() => child.kill("SIGKILL"), 5000);
          child.once("exit", () => {
            clearTimeout(t);
            resolve();
          });
          child.kill("SIGTERM");
        }),
    ),
  );
  process.off("SIGINT", forward);
  process.off("SIGTERM", forward);
  return 0;
}

/** Set by the demo for its members (and passed on to those a neighbour restarts): the demo's pid. */
const DEMO_PARENT_ENV = "BACKPACK_RING_DEMO_PARENT";

/** The command line that starts this member again (what a neighbour runs to restart it). */
function memberArgv(args: ParsedArgs, port: number): string[] {
  const argv = ["ring-demo", "--member", String(port)];
  for (const name of [
    "ports",
    "host",
    "seeds",
    "http-port",
    "hold-ms",
    "period-ms",
    "probe-timeout-ms",
    "secret-file",
  ]) {
    const v = optString(args, name);
    if (v !== undefined) argv.push(`--${name}`, v);
  }
  return argv;
}

/**
 * Aborts `stop` once the demo that started the ring is gone: a member restarted by a neighbour is no child of
 * the demo (it has no IPC channel to it), and must not outlive it.
 */
function stopWhenOrphaned(io: CommandIo, stop: AbortController): void {
  const parent = Number(io.env[DEMO_PARENT_ENV]);
  if (!(parent > 0) || process.channel) return;
  const timer = setInterval(() => {
    try {
      process.kill(parent, 0);
    } catch {
      stop.abort();
    }
  }, 1000);
  stop.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}

export function parsePorts(text: string): number[] {
  const m = /^(\d+)-(\d+)$/.exec(text);
  if (!m) {
    const single = parsePort(text, "--ports");
    return [single];
  }
  const lo = parsePort(m[1] ?? "", "--ports");
  const hi = parsePort(m[2] ?? "", "--ports");
  if (hi < lo || hi - lo > 255)
    throw new UsageError(`--ports must be FIRST-LAST with at most 256 ports, got "${text}"`);
  return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
}

function parsePort(text: string, what: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new UsageError(`${what} must be a port 1-65535, got "${text}"`);
  }
  return Number(text);
}
