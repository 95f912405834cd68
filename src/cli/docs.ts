import { formatHelp } from "./args.js";
import { ALIASES, COMMANDS, loadCommand, topLevelHelp } from "./main.js";

/**
 * Prints docs/commands.md from the commands' own specs, so the reference and `--help` cannot drift apart
 * (`npm run docs:commands`; a test compares them).
 */
export async function commandsMarkdown(): Promise<string> {
  const aliasOf = new Map(Object.entries(ALIASES).map(([alias, name]) => [name, alias]));
  const out: string[] = [
    "# Commands",
    "",
    "Every command prints its usage with `--help`. Exit codes: `0` success, `1` refused or failed (the",
    "message says why; nothing was changed), `2` wrong arguments (usage on stderr; nothing was changed).",
    "Every positional argument can also be given as a named option (`--zk`, `--root`, ...).",
    "",
    "The seed's standalone names (`backpack-coordinator-add-shard`, ...) and the `backpack <subcommand>` forms",
    "run the same code. `<zk>` is a ZooKeeper connection string (`a:2181,b:2181,c:2181`), or `file:<path>` for",
    "an embedded cluster map file.",
    "",
    "A word that is no command (`backpack stauts`) is an error naming the commands it is most likely a typo of",
    "(exit 2, nothing started or created). A storage node starts only as `backpack node ...`, or in the",
    "original's form `backpack <data dir> <host> <port> [<redis host> <redis port>]` with a valid host and port",
    "and a data dir written as a path (`./data`, `/var/lib/backpack`) or as a word no command name is close to.",
    "`backpack --version` (`-v`, `version`) prints the version; `backpack help <command>` a command's help.",
    "",
    "This file is generated from the commands' help texts: `npm run docs:commands`.",
    "",
    "## backpack --help",
    "",
    "```text",
    topLevelHelp().trimEnd(),
    "```",
    "",
  ];
  for (const name of Object.keys(COMMANDS)) {
    const command = await loadCommand(name);
    if (!command) throw new Error(`${name} has no module`);
    const alias = aliasOf.get(name);
    out.push(`## ${name}`, "");
    if (alias) out.push(`Also installed as \`${alias}\`.`, "");
    out.push("```text", formatHelp(command.spec).trimEnd(), "```", "");
  }
  return out.join("\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  process.stdout.write(await commandsMarkdown());
}
