import { buildConfig, check } from "../common/config.js";
import { parseAddr } from "./transport/tcp-transport.js";

/** Settings of one ring member process (times in ms). */
export interface RingMemberConfig {
  /** Interface to listen on for ring connections. */
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Member id; defaults to the advertised address (`host:port`). */
  id: string | undefined;
  /** Address others connect to, when it differs from host:port (NAT, 0.0.0.0 listeners). */
  advertise: string | undefined;
  /** host:port of members to join through; also probed while not alive in the view (partition healing). */
  seeds: readonly string[];
  /** Cluster secret: when set, every frame is HMAC-authenticated and peers without it are refused. */
  secret: string | undefined;
  meta: Readonly<Record<string, string>>;
  periodMs: number;
  probeTimeoutMs: number;
  suspicionMult: number;
  lifeguard: boolean;
  rings: number;
  tokenHoldMs: number;
  maxFrameBytes: number;
  maxQueueBytes: number;
}

export const RING_DEFAULTS: RingMemberConfig = {
  host: "127.0.0.1",
  port: 0,
  id: undefined,
  advertise: undefined,
  seeds: [],
  secret: undefined,
  meta: {},
  // 500 ms / 300 ms: measured scheduling stalls of 100-250 ms on 2 busy cores make shorter timeouts
  // manufacture suspicions between real processes.
  periodMs: 500,
  probeTimeoutMs: 300,
  suspicionMult: 3,
  lifeguard: true,
  rings: 3,
  tokenHoldMs: 100,
  maxFrameBytes: 4 * 1024 * 1024,
  maxQueueBytes: 8 * 1024 * 1024,
};

export function ringMemberConfig(
  ...layers: Array<Partial<RingMemberConfig> | undefined>
): Readonly<RingMemberConfig> {
  return buildConfig<RingMemberConfig>("ring member", [RING_DEFAULTS, ...layers], (c, problems) => {
    check.nonEmpty(problems, "host", c.host);
    check.port(problems, "port", c.port);
    check.positiveInt(problems, "periodMs", c.periodMs);
    check.positiveInt(problems, "probeTimeoutMs", c.probeTimeoutMs);
    if (c.probeTimeoutMs >= c.periodMs) problems.push("probeTimeoutMs must be shorter than periodMs");
    check.positiveInt(problems, "suspicionMult", c.suspicionMult);
    check.positiveInt(problems, "rings", c.rings);
    check.nonNegative(problems, "tokenHoldMs", c.tokenHoldMs);
    check.positiveInt(problems, "maxFrameBytes", c.maxFrameBytes);
    check.positiveInt(problems, "maxQueueBytes", c.maxQueueBytes);
    for (const s of c.seeds) {
      if (!parseAddr(s)) problems.push(`seed ${JSON.stringify(s)} must be host:port`);
    }
    if (c.advertise !== undefined && !parseAddr(c.advertise)) problems.push("advertise must be host:port");
    if (c.secret !== undefined && c.secret.length < 16) {
      problems.push(
        "the cluster secret must be at least 16 characters (generate one with: openssl rand -hex 32)",
      );
    }
  });
}
