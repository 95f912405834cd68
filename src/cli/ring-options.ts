import { ringMemberConfig, type RingMemberConfig } from "../ring/config.js";
import { UsageError, type CommandSpec, type OptionSpec, type ParsedArgs } from "./args.js";
import { Respawner, respawnMeta } from "./respawner.js";
import type { Logger } from "../common/logger.js";
import type { RingMember } from "../ring/ring-member.js";
import { optString, type CommandIo } from "./command.js";
import { durationOption, secretOption } from "./options.js";

/** The ring options every service command takes (storage node, coordinator, replicator). */
export const RING_OPTIONS: readonly OptionSpec[] = [
  {
    name: "no-ring",
    type: "boolean",
    description:
      "do not join the ring (membership and failure detection, docs/ring.md); dead nodes are then noticed by timeouts only",
  },
  {
    name: "ring-seeds",
    type: "string",
    description:
      "host:port,... of ring members to join through (coordinators and replicators also join through the cluster map's nodes)",
  },
  {
    name: "ring-advertise",
    type: "string",
    description:
      "host:port other processes reach this one at (default: the listen address; 0.0.0.0 advertises the host name)",
  },
  {
    name: "ring-secret-file",
    type: "string",
    description:
      "file with the cluster secret, the same on every process (or set BACKPACK_RING_SECRET): ring messages are authenticated (HMAC-SHA256), others refused",
  },
  {
    name: "respawn-neighbours",
    type: "boolean",
    description:
      "supervisor mode for a host's processes started together: when one dies, its ring neighbour on this host restarts it with backoff (needs --ring-secret-file)",
  },
  {
    name: "ring-period",
    type: "string",
    description: "failure detector probe period",
    default: "500ms",
  },
  {
    name: "ring-probe-timeout",
    type: "string",
    description: "time a probed member has to answer before others are asked to try it",
    default: "300ms",
  },
];

/**
 * The ring settings of a service command (`subcommand` of `backpack`, e.g. "node"), or undefined with
 * --no-ring. Validated (exit 2 when wrong). With --respawn-neighbours the member announces its command line.
 */
export function ringConfigOf(
  args: ParsedArgs,
  io: CommandIo,
  spec: CommandSpec,
  subcommand: string,
): Readonly<RingMemberConfig> | undefined {
  if (args.options["no-ring"] === true) {
    if (args.options["respawn-neighbours"] === true)
      throw new UsageError("--respawn-neighbours needs the ring");
    return undefined;
  }
  const seeds = optString(args, "ring-seeds");
  const secret = secretOption(args, io, "ring-secret-file", "BACKPACK_RING_SECRET", "cluster secret");
  const respawn = args.options["respawn-neighbours"] === true;
  // A restart runs the command line a member announces: only members that share the cluster secret may.
  if (respawn && secret === undefined) throw new UsageError("--respawn-neighbours needs --ring-secret-file");
  return ringMemberConfig({
    meta: respawn ? respawnMeta([subcommand, ...commandLineOf(spec, args)]) : undefined,
    seeds: seeds === undefined ? undefined : seeds.split(",").filter((s) => s.length > 0),
    advertise: optString(args, "ring-advertise"),
    secret,
    periodMs: durationOption(args, "ring-period"),
    probeTimeoutMs: durationOption(args, "ring-probe-timeout"),
  });
}

/** The arguments that start this command again: every positional and option given, as `--name value`. */
function commandLineOf(spec: CommandSpec, args: ParsedArgs): string[] {
  const out: string[] = [];
  for (const p of spec.positionals) {
    const v = args.positionals[p.name];
    if (v !== undefined) out.push(`--${p.name}`, v);
  }
  for (const o of spec.options) {
    const v = args.options[o.name];
    if (v === true) out.push(`--${o.name}`);
    else if (typeof v === "string") out.push(`--${o.name}`, v);
    else if (Array.isArray(v)) for (const x of v) out.push(`--${o.name}`, x);
  }
  return out;
}

/** With --respawn-neighbours: restarts dead members of this host (stop it with the service). */
export function startRespawner(
  args: ParsedArgs,
  member: RingMember | undefined,
  log: Logger,
): Respawner | undefined {
  if (args.options["respawn-neighbours"] !== true || !member) return undefined;
  const r = new Respawner(member, log);
  r.start();
  return r;
}
