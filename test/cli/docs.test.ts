import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { formatHelp } from "../../src/cli/args.js";
import { ALIASES, COMMANDS, loadCommand, topLevelHelp } from "../../src/cli/main.js";
import { runBin } from "../helpers/process.js";

const docs = await readFile(new URL("../../../docs/commands.md", import.meta.url), "utf8");

test("every command's --help text appears verbatim in docs/commands.md", async () => {
  const missing: string[] = [];
  for (const name of Object.keys(COMMANDS)) {
    const command = await loadCommand(name);
    assert.ok(command, `${name} has no module`);
    if (!docs.includes(formatHelp(command.spec).trimEnd())) missing.push(name);
  }
  assert.deepEqual(missing, [], "regenerate with `npm run docs:commands`");
});

test("backpack --help, one line per command, appears verbatim in docs/commands.md", () => {
  assert.ok(docs.includes(topLevelHelp().trimEnd()), "regenerate with `npm run docs:commands`");
});

test("the seed's standalone names run the same command (help from a real process)", async () => {
  for (const [alias, name] of Object.entries(ALIASES)) {
    const res = await runBin(alias, ["--help"]);
    assert.equal(res.code, 0, `${alias} --help: ${res.stderr}`);
    assert.match(res.stdout, new RegExp(`^Usage: ${alias}\\b`), `${alias} prints its own name`);
    const canonical = await loadCommand(name);
    assert.ok(canonical);
    assert.ok(res.stdout.includes(canonical.spec.summary), `${alias} shows the summary of ${name}`);
  }
});

test("backpack without arguments prints usage and exits 2", async () => {
  const res = await runBin("backpack", []);
  assert.equal(res.code, 2);
  assert.match(res.stdout, /Usage: backpack <command>/);
});
