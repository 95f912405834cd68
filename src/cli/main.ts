import { runCommand, type Command, type CommandIo } from "./command.js";

/**
 * Every command by the name an operator types. The seed's names (`backpack-coordinator-add-shard`, ...) and
 * the `backpack <subcommand>` forms map to the same module. Modules load lazily so that a short command
 * starts fast.
 */
export const COMMANDS: Readonly<Record<string, string>> = {
  "backpack node": "./commands/node.js",
  "backpack dev": "./commands/dev.js",
  "backpack coordinator": "./commands/coordinator.js",
  "backpack replicator": "./commands/replicator.js",
  "backpack admin init": "./commands/admin/init.js",
  "backpack admin add-server": "./commands/admin/add-server.js",
  "backpack admin add-shard": "./commands/admin/add-shard.js",
  "backpack admin set-shard-servers": "./commands/admin/set-shard-servers.js",
  "backpack admin enable-shard": "./commands/admin/enable-shard.js",
  "backpack admin disable-shard": "./commands/admin/disable-shard.js",
  "backpack admin dump-shards": "./commands/admin/dump-shards.js",
  "backpack admin print-stats": "./commands/admin/print-stats.js",
  "backpack admin set-queue": "./commands/admin/set-queue.js",
  "backpack admin set-settings": "./commands/admin/set-settings.js",
  "backpack admin nginx-config": "./commands/admin/nginx-config.js",
  "backpack queue status": "./commands/queue/status.js",
  "backpack repair": "./commands/repair.js",
  "backpack queue dead-letters": "./commands/queue/dead-letters.js",
  "backpack queue replay": "./commands/queue/replay.js",
  "backpack put": "./commands/client/put.js",
  "backpack get": "./commands/client/get.js",
  "backpack rm": "./commands/client/rm.js",
  "backpack stat": "./commands/client/stat.js",
  "backpack status": "./commands/client/status.js",
  "backpack ring-demo": "./commands/ring-demo.js",
};

/** The seed's standalone command names, each an alias of a `backpack ...` form. */
export const ALIASES: Readonly<Record<string, string>> = {
  "backpack-coordinator": "backpack coordinator",
  "backpack-replicator": "backpack replicator",
  "backpack-coordinator-init": "backpack admin init",
  "backpack-coordinator-add-server": "backpack admin add-server",
  "backpack-coordinator-add-shard": "backpack admin add-shard",
  "backpack-coordinator-set-shard-servers": "backpack admin set-shard-servers",
  "backpack-coordinator-enable-shard": "backpack admin enable-shard",
  "backpack-coordinator-disable-shard": "backpack admin disable-shard",
  "backpack-coordinator-dump-shards": "backpack admin dump-shards",
  "backpack-coordinator-print-stats": "backpack admin print-stats",
  "backpack-coordinator-set-queue": "backpack admin set-queue",
  "backpack-coordinator-set-settings": "backpack admin set-settings",
  "backpack-coordinator-nginx-config": "backpack admin nginx-config",
};

export async function loadCommand(name: string): Promise<Command | undefined> {
  const path = COMMANDS[ALIASES[name] ?? name];
  if (path === undefined) return undefined;
  const mod = (await import(path)) as { command: Command };
  // The standalone name is what the operator typed: show it in usage and errors.
  return ALIASES[name] ? { ...mod.command, spec: { ...mod.command.spec, name } } : mod.command;
}

/**
 * Resolves `backpack <words...>` to the longest known command name. Anything else is the storage node's
 * positional form `backpack <data dir> <listen host> <listen port>`.
 */
export function resolveBackpack(argv: readonly string[]): { name: string; argv: string[] } {
  for (let n = Math.min(2, argv.length); n >= 1; n--) {
    const name = ["backpack", ...argv.slice(0, n)].join(" ");
    if (COMMANDS[name]) return { name, argv: argv.slice(n) };
  }
  return { name: "backpack node", argv: [...argv] };
}

function processIo(): CommandIo {
  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  return {
    stdout: (text) => process.stdout.write(text),
    stdoutStream: process.stdout,
    stderr: (text) => process.stderr.write(text),
    env: process.env,
    stopSignal: controller.signal,
    isTTY: process.stdout.isTTY === true,
  };
}

/** The entry of every `bin` file: runs the command and sets the exit code. */
export async function main(binName: string, argv: readonly string[]): Promise<void> {
  let name = binName;
  let args = [...argv];
  if (binName === "backpack") {
    if (args.length === 0 || args[0] === "--help" || args[0] === "-h") {
      process.stdout.write(topLevelHelp());
      process.exitCode = args.length === 0 ? 2 : 0;
      return;
    }
    ({ name, argv: args } = resolveBackpack(args));
  }
  const command = await loadCommand(name);
  if (!command) {
    process.stderr.write(`unknown command ${name}\n`);
    process.exitCode = 2;
    return;
  }
  process.exitCode = await runCommand(command, args, processIo());
}

export function topLevelHelp(): string {
  const names = Object.keys(COMMANDS).map((n) => `  ${n}`);
  return [
    "Usage: backpack <command> [arguments] [options]",
    "       backpack <data dir> <listen host> <listen port>   (a storage node, the original's form)",
    "",
    "Commands:",
    ...names,
    "",
    "The seed's standalone names also work: " + Object.keys(ALIASES).join(", ") + ".",
    "Run any command with --help for its arguments.",
    "",
  ].join("\n");
}
