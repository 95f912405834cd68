import type { SettingsPatch } from "../../../cluster/settings.js";
import type { LogLevel } from "../../../common/logger.js";
import { UsageError } from "../../args.js";
import { optString, type Command } from "../../command.js";
import { LOG_LEVELS } from "../../options.js";
import { JSON_OPTION, MAP_POSITIONALS, printJson, withClusterMap } from "./shared.js";

export const command: Command = {
  spec: {
    name: "backpack admin set-settings",
    summary:
      "Changes the cluster's runtime settings (log level, per-client request rate, blocklist); every process applies them within a moment, without a restart.",
    positionals: [...MAP_POSITIONALS],
    options: [
      {
        name: "log-level",
        type: "string",
        description: `log level of every process: ${LOG_LEVELS.join(", ")}, or default (each its own)`,
      },
      {
        name: "client-rate",
        type: "string",
        description:
          "requests per second each client may make over all coordinators together (e.g. 100), or off",
      },
      {
        name: "client-burst",
        type: "string",
        description:
          "requests a client may make above --client-rate in a burst (default: one second's worth)",
      },
      {
        name: "block",
        type: "string",
        multiple: true,
        description: "refuse a client everywhere (403): an IP address, or token:<fingerprint> (repeatable)",
      },
      { name: "unblock", type: "string", multiple: true, description: "take a client off the blocklist" },
      JSON_OPTION,
    ],
    notes: `
The settings live in the cluster map (/settings, one version up at each change) and reach every process: at
once those that read the map (coordinators, replicators), and storage nodes over the ring's broadcast; a
process started later reads them too. A process applies only a version above the one it has. Options not
given keep their value. A client is named in the answers it gets (403, 429): its IP address, or token:<fingerprint>
when it sends a write token.

Output: the settings after the change, e.g. "Settings version 4: log level debug, client rate off, 1 blocked".

Exit codes: 0 done, 1 refused (cluster map not initialised, ZooKeeper unreachable), 2 wrong arguments.

Examples:
  backpack-coordinator-set-settings zk1:2181 /backpack --log-level debug
  backpack-coordinator-set-settings zk1:2181 /backpack --client-rate 200 --client-burst 400
  backpack-coordinator-set-settings zk1:2181 /backpack --block 203.0.113.9 --unblock 198.51.100.7`,
  },
  async run(args, io) {
    const patch: SettingsPatch = {};
    const level = optString(args, "log-level");
    if (level !== undefined) {
      if (level !== "default" && !(LOG_LEVELS as readonly string[]).includes(level)) {
        throw new UsageError(
          `--log-level must be one of ${LOG_LEVELS.join(", ")} or default, got "${level}"`,
        );
      }
      patch.logLevel = level === "default" ? null : (level as LogLevel);
    }
    const rate = optString(args, "client-rate");
    const burst = optString(args, "client-burst");
    if (rate !== undefined) {
      if (rate === "off") patch.clientRate = null;
      else {
        const perSec = Number(rate);
        const b = burst === undefined ? perSec : Number(burst);
        if (!(perSec > 0) || !(b >= 0)) {
          throw new UsageError(`--client-rate must be a number > 0 or off, and --client-burst ≥ 0`);
        }
        patch.clientRate = { perSec, burst: b };
      }
    } else if (burst !== undefined) throw new UsageError("--client-burst goes with --client-rate");
    patch.block = (args.options.block as string[] | undefined) ?? [];
    patch.unblock = (args.options.unblock as string[] | undefined) ?? [];
    if (Object.keys(patch).length === 2 && patch.block.length === 0 && patch.unblock.length === 0) {
      throw new UsageError("nothing to change: give --log-level, --client-rate, --block or --unblock");
    }
    const s = await withClusterMap(args, (map) => map.setSettings(patch));
    if (args.options.json === true) io.stdout(printJson(s));
    else {
      const rateText = s.clientRate ? `${s.clientRate.perSec}/s (burst ${s.clientRate.burst})` : "off";
      io.stdout(
        `Settings version ${s.version}: log level ${s.logLevel ?? "default"}, client rate ${rateText}, ` +
          `${s.blocklist.length} blocked\n`,
      );
    }
    return 0;
  },
};
