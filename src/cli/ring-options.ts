import { ringMemberConfig, type RingMemberConfig } from "../ring/config.js";
import type { OptionSpec, ParsedArgs } from "./args.js";
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

/** The ring settings of a service command, or undefined with --no-ring. Validated (exit 2 when wrong). */
export function ringConfigOf(args: ParsedArgs, io: CommandIo): Readonly<RingMemberConfig> | undefined {
  if (args.options["no-ring"] === true) return undefined;
  const seeds = optString(args, "ring-seeds");
  return ringMemberConfig({
    seeds: seeds === undefined ? undefined : seeds.split(",").filter((s) => s.length > 0),
    advertise: optString(args, "ring-advertise"),
    secret: secretOption(args, io, "ring-secret-file", "BACKPACK_RING_SECRET", "cluster secret"),
    periodMs: durationOption(args, "ring-period"),
    probeTimeoutMs: durationOption(args, "ring-probe-timeout"),
  });
}
