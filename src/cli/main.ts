import { readFileSync } from "node:fs";
import { positionalArgs } from "./args.js";
import { runCommand, type Command, type CommandIo } from "./command.js";
import { isPort, isHost } from "./options.js";
import { closestNames } from "./suggest.js";

/** A command by the name an operator types: its module (loaded lazily, so a short command starts fast) and a line for `backpack --help`. */
interface CommandEntry {
  module: string;
  section: string;
  line: string;
}

/**
 * Every command by the name an operator types, in the order `backpack --help` and docs/commands.md list them.
 * The seed's names (`backpack-coordinator-add-shard`, ...) and the `backpack <subcommand>` forms map to the
 * same module.
 */
export const COMMANDS: Readonly<Record<string, CommandEntry>> = {
  "backpack put": {
    module: "./commands/client/put.js",
    section: "files",
    line: "upload files and directories",
  },
  "backpack get": {
    module: "./commands/client/get.js",
    section: "files",
    line: "download a file by its <shard>:<key> address",
  },
  "backpack rm": {
    module: "./commands/client/rm.js",
    section: "files",
    line: "delete a file from every node of its shard",
  },
  "backpack stat": {
    module: "./commands/client/stat.js",
    section: "files",
    line: "show a file's size, checksum, type and the nodes that hold it",
  },
  "backpack status": {
    module: "./commands/client/status.js",
    section: "files",
    line: "show the cluster: shards, nodes, usage, replication queue",
  },
  "backpack dev": {
    module: "./commands/dev.js",
    section: "services",
    line: "run a whole cluster in one process (what npm start runs)",
  },
  "backpack node": {
    module: "./commands/node.js",
    section: "services",
    line: "run a storage node (also: backpack <data dir> <host> <port>)",
  },
  "backpack coordinator": {
    module: "./commands/coordinator.js",
    section: "services",
    line: "run a coordinator: takes uploads, serves reads with failover",
  },
  "backpack replicator": {
    module: "./commands/replicator.js",
    section: "services",
    line: "run a replicator: makes the queued copies, repairs replicas",
  },
  "backpack admin init": {
    module: "./commands/admin/init.js",
    section: "admin",
    line: "create a cluster map (servers, shards, queue settings)",
  },
  "backpack admin add-server": {
    module: "./commands/admin/add-server.js",
    section: "admin",
    line: "register a storage node, or change its URL",
  },
  "backpack admin add-shard": {
    module: "./commands/admin/add-shard.js",
    section: "admin",
    line: "add a shard (its servers and capacity), read-only until enabled",
  },
  "backpack admin set-shard-servers": {
    module: "./commands/admin/set-shard-servers.js",
    section: "admin",
    line: "change the servers of a shard",
  },
  "backpack admin enable-shard": {
    module: "./commands/admin/enable-shard.js",
    section: "admin",
    line: "make a shard writable",
  },
  "backpack admin disable-shard": {
    module: "./commands/admin/disable-shard.js",
    section: "admin",
    line: "make a shard read-only (its files stay readable)",
  },
  "backpack admin dump-shards": {
    module: "./commands/admin/dump-shards.js",
    section: "admin",
    line: "print every shard with its servers, state and capacity",
  },
  "backpack admin print-stats": {
    module: "./commands/admin/print-stats.js",
    section: "admin",
    line: "print each shard's usage against its capacity",
  },
  "backpack admin set-queue": {
    module: "./commands/admin/set-queue.js",
    section: "admin",
    line: "set the replication queue's name and Redis servers",
  },
  "backpack admin set-settings": {
    module: "./commands/admin/set-settings.js",
    section: "admin",
    line: "change the runtime settings: log level, client rate, blocklist",
  },
  "backpack admin s3-key": {
    module: "./commands/admin/s3-key.js",
    section: "admin",
    line: "create, list or revoke access keys of the S3 API",
  },
  "backpack admin nginx-config": {
    module: "./commands/admin/nginx-config.js",
    section: "admin",
    line: "print (or keep current) an nginx config for reads",
  },
  "backpack queue status": {
    module: "./commands/queue/status.js",
    section: "replication",
    line: "show the replication queue: depth, lag, waiting copies",
  },
  "backpack queue dead-letters": {
    module: "./commands/queue/dead-letters.js",
    section: "replication",
    line: "list the tasks the replicators gave up on",
  },
  "backpack queue replay": {
    module: "./commands/queue/replay.js",
    section: "replication",
    line: "put dead letters back in the replication queue",
  },
  "backpack repair": {
    module: "./commands/repair.js",
    section: "replication",
    line: "compare every shard's replicas now and repair what differs",
  },
  "backpack ring-demo": {
    module: "./commands/ring-demo.js",
    section: "demo",
    line: "the ring of servers demo: member processes on a port range",
  },
};

const SECTIONS: Readonly<Record<string, string>> = {
  files: "Files (through a coordinator, http://127.0.0.1:12001 unless --to or BACKPACK_URL)",
  services: "Services",
  admin: "Cluster map",
  replication: "Replication and repair",
  demo: "Demo",
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
  const entry = COMMANDS[ALIASES[name] ?? name];
  if (entry === undefined) return undefined;
  const mod = (await import(entry.module)) as { command: Command };
  // The standalone name is what the operator typed: show it in usage and errors.
  return ALIASES[name] ? { ...mod.command, spec: { ...mod.command.spec, name } } : mod.command;
}

/** What `backpack <argv...>` asks for. */
export type Resolved =
  | { kind: "command"; name: string; argv: string[] }
  /** `--help`, `help [<command>]`; `usage`: no arguments at all (the help, exit 2). */
  | { kind: "help"; topic: string[]; usage?: boolean }
  | { kind: "version" }
  | { kind: "unknown"; word: string; suggestions: string[] };

/** `put`, `admin init`, ...: the command names as typed after `backpack`. */
const SUBCOMMANDS = Object.keys(COMMANDS).map((n) => n.slice("backpack ".length));
const GROUPS = new Set(SUBCOMMANDS.filter((s) => s.includes(" ")).map((s) => s.split(" ")[0] as string));

/**
 * Resolves `backpack <words...>`: the longest known command name, `help`/`--help`, `version`/`--version`, or
 * the storage node in the original's form `backpack <data dir> <host> <port> [<redis host> <redis port>]`.
 * Anything else is an unknown command, with the names it is most likely a typo of: a typo never runs a node.
 */
export async function resolveBackpack(argv: readonly string[]): Promise<Resolved> {
  const first = argv[0];
  if (first === undefined) return { kind: "help", topic: [], usage: true };
  if (first === "--help" || first === "-h" || first === "help") return { kind: "help", topic: argv.slice(1) };
  if (first === "--version" || first === "-v" || first === "version") return { kind: "version" };
  for (let n = Math.min(2, argv.length); n >= 1; n--) {
    const name = ["backpack", ...argv.slice(0, n)].join(" ");
    if (COMMANDS[name]) return { name, argv: argv.slice(n), kind: "command" };
  }
  if (GROUPS.has(first)) {
    if (argv[1] === "--help" || argv[1] === "-h") return { kind: "help", topic: [first] };
    const word = [first, argv[1] ?? ""].join(" ").trim();
    const group = SUBCOMMANDS.filter((s) => s.startsWith(`${first} `));
    const close = argv[1] === undefined ? [] : closestNames(word, group);
    return { kind: "unknown", word, suggestions: close.length > 0 ? close : group };
  }
  if (await isOriginalNodeForm(argv)) return { kind: "command", name: "backpack node", argv: [...argv] };
  // `replay` is close to `queue replay`: compare with the last word of each name too.
  return { kind: "unknown", word: first, suggestions: closestNames(first, SUBCOMMANDS, lastWordToo) };
}

function lastWordToo(name: string): string[] {
  return [name, name.split(" ").pop() ?? name];
}

/**
 * The original's way to start a node: a data dir written as a path (`./data`, `/var/lib/backpack`; the node's
 * own checks then report what else is wrong), or exactly 3 or 5 arguments with a valid host and port whose
 * data dir is not a word close to a command name (`backpack stauts 127.0.0.1 12005` is a typo of `status`).
 */
async function isOriginalNodeForm(argv: readonly string[]): Promise<boolean> {
  const first = argv[0] ?? "";
  if (first.startsWith("-")) return false;
  if (first.includes("/")) return true;
  const node = await loadCommand("backpack node");
  const words = node ? positionalArgs(node.spec, argv) : [];
  if (words.length !== 3 && words.length !== 5) return false;
  if (!isHost(words[1] ?? "") || !isPort(words[2] ?? "")) return false;
  return closestNames(first, SUBCOMMANDS, lastWordToo).length === 0 && !GROUPS.has(first);
}

function processIo(): CommandIo {
  const controller = new AbortController();
  // Every SIGINT/SIGTERM is caught for as long as the command runs: under `npm start` a Ctrl-C arrives twice
  // (from the terminal and forwarded by npm), and a second one must not cut the clean stop short.
  const onSignal = (): void => controller.abort();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
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
    const resolved = await resolveBackpack(args);
    switch (resolved.kind) {
      case "help":
        if (resolved.topic.length === 0 || ["help", "--help", "-h"].includes(resolved.topic[0] ?? "")) {
          process.stdout.write(topLevelHelp());
          process.exitCode = resolved.usage ? 2 : 0;
          return;
        }
        if (resolved.topic.length === 1 && GROUPS.has(resolved.topic[0] ?? "")) {
          process.stdout.write(topLevelHelp(`${resolved.topic[0]} `));
          process.exitCode = 0;
          return;
        }
        return main(binName, [...resolved.topic, "--help"]);
      case "version":
        process.stdout.write(`backpack ${packageVersion()}\n`);
        process.exitCode = 0;
        return;
      case "unknown":
        process.stderr.write(unknownCommandText(resolved.word, resolved.suggestions));
        process.exitCode = 2;
        return;
      case "command":
        ({ name, argv: args } = resolved);
    }
  }
  const command = await loadCommand(name);
  if (!command) {
    process.stderr.write(`unknown command ${name}\n`);
    process.exitCode = 2;
    return;
  }
  process.exitCode = await runCommand(command, args, processIo());
}

export function unknownCommandText(word: string, suggestions: readonly string[]): string {
  const named = suggestions.map((s) => `"backpack ${s}"`);
  const hint =
    named.length === 0
      ? ""
      : named.length === 1
        ? ` Did you mean ${named[0]}?`
        : ` Did you mean one of ${named.join(", ")}?`;
  const what = word.startsWith("-") ? "option" : "command";
  return (
    `backpack: unknown ${what} "${word}".${hint}\n` +
    `Run "backpack --help" for the list of commands. A storage node starts with ` +
    `"backpack node <data-dir> <host> <port>".\n`
  );
}

/** The version in package.json, read only when asked for. */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
    version?: string;
  };
  return pkg.version ?? "unknown";
}

/**
 * `backpack --help`: every command with one line, by section; docs/commands.md starts with the same text.
 * With a `prefix` (`queue `), the commands that start with it (`backpack queue --help`).
 */
export function topLevelHelp(prefix = ""): string {
  const width = Math.max(...SUBCOMMANDS.map((s) => s.length)) + 4;
  const lines = [
    `Usage: backpack ${prefix}<command> [arguments] [options]`,
    ...(prefix ? [] : ["       backpack <data dir> <host> <port>   (a storage node, the original's form)"]),
  ];
  for (const [section, title] of Object.entries(SECTIONS)) {
    const names = Object.keys(COMMANDS).filter(
      (name) => COMMANDS[name]?.section === section && name.startsWith(`backpack ${prefix}`),
    );
    if (names.length === 0) continue;
    lines.push("", `${title}:`);
    for (const name of names) {
      lines.push(`  ${name.slice("backpack ".length).padEnd(width)}${COMMANDS[name]?.line ?? ""}`);
    }
  }
  if (prefix) return [...lines, "", "Run any command with --help for its arguments.", ""].join("\n");
  lines.push(
    "",
    "Options:",
    `  ${"-h, --help".padEnd(width)}show this help; backpack help <command> shows a command's`,
    `  ${"-v, --version".padEnd(width)}print the version`,
    "",
    ...wrap("The seed's standalone names run the same commands: " + Object.keys(ALIASES).join(", ") + "."),
    "Run any command with --help for its arguments, options, output and exit codes.",
    "",
  );
  return lines.join("\n");
}

/** Text broken into lines of at most `width` characters, at spaces. */
function wrap(text: string, width = 110): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  return line ? [...lines, line] : lines;
}
