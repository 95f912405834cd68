import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { COMMANDS } from "../../src/cli/main.js";
import { runBin, startProcess } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";

const pkg = JSON.parse(await readFile(new URL("../../../package.json", import.meta.url), "utf8")) as {
  version: string;
};

void test("a mistyped command is an error with a suggestion: exit 2, nothing started, nothing created", async (t) => {
  const cwd = await tempDir(t, "backpack-typo-");
  const cases: [string[], RegExp][] = [
    [
      ["stauts"],
      /unknown command "stauts"\. Did you mean one of "backpack status", "backpack queue status"\?/,
    ],
    [["stauts", "127.0.0.1", "12005"], /unknown command "stauts"\. Did you mean .*"backpack status"/],
    [["help", "stauts"], /unknown command "stauts"/],
    [["sttat", "1:hi.txt"], /Did you mean "backpack stat"\?/],
    [["replay"], /Did you mean "backpack queue replay"\?/],
    [["queue", "stauts"], /unknown command "queue stauts"\. Did you mean "backpack queue status"\?/],
    [["admin"], /unknown command "admin"\. Did you mean one of "backpack admin init", /],
    [["out", "127.0.0.1", "12005"], /Did you mean "backpack put"\?/],
    [["xyzzy"], /unknown command "xyzzy"\.\n/],
    [["data", "127.0.0.1", "port"], /unknown command "data"/],
    [["data", "not a host", "12005"], /unknown command "data"/],
    [["--frobnicate"], /unknown option "--frobnicate"/],
  ];
  await Promise.all(
    cases.map(async ([args, expected]) => {
      const r = await runBin("backpack", args, { cwd });
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, expected, args.join(" "));
      assert.match(r.stderr, /Run "backpack --help" for the list of commands/);
      assert.equal(r.stdout, "", args.join(" "));
    }),
  );
  assert.deepEqual(await readdir(cwd), [], "no data dir (or anything else) created");
});

void test("backpack help <command> and <command> --help print the command's help; --help lists every command with a line", async () => {
  for (const args of [
    ["help", "put"],
    ["put", "--help"],
  ]) {
    const r = await runBin("backpack", args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: backpack put <paths>\.\.\./);
  }
  for (const args of [
    ["queue", "--help"],
    ["help", "queue"],
  ]) {
    const r = await runBin("backpack", args);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage: backpack queue <command>/);
    assert.match(r.stdout, /^ {2}queue replay +put dead letters back/m);
    assert.doesNotMatch(r.stdout, /admin init/);
  }
  for (const args of [["--help"], ["-h"], ["help"]]) {
    const r = await runBin("backpack", args);
    assert.equal(r.code, 0, r.stderr);
    for (const name of Object.keys(COMMANDS)) {
      const sub = name.slice("backpack ".length);
      assert.match(r.stdout, new RegExp(`^  ${sub} +\\S.*$`, "m"), `${sub} has a line of its own`);
    }
    assert.match(r.stdout, /-v, --version/);
  }
});

void test("backpack --version, -v and version print the package's version", async () => {
  for (const flag of ["--version", "-v", "version"]) {
    const r = await runBin("backpack", [flag]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `backpack ${pkg.version}\n`);
  }
});

void test("the original's form with a plain data dir name, a valid host and port, still runs a node", async (t) => {
  const cwd = await tempDir(t, "backpack-form-");
  const node = await startProcess(t, { command: "backpack", args: ["data", "127.0.0.1", "0"], cwd });
  assert.match(node.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(existsSync(join(cwd, "data")), true, "the data dir is ./data");
  assert.equal(await node.kill("SIGTERM"), 0);
});

void test("a node's host must be an address or a host name: exit 2, no data dir", async (t) => {
  const dir = join(await tempDir(t), "data");
  for (const args of [
    ["node", dir, "not a host", "0"],
    [dir, "bad_host!", "0"],
    [dir, "-", "0"],
  ]) {
    const r = await runBin("backpack", args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, /<host> must be an IP address or a host name|Usage: backpack node/);
  }
  assert.equal(existsSync(dir), false);
});
