// Runs every compiled test file (dist/test/**/*.test.js) with node:test.
// Arguments narrow the set: `npm test -- storage node` runs the files whose path contains "storage" or "node".
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith(".test.js")) out.push(p);
  }
  return out;
}

// BACKPACK_TEST_FILTER (comma-separated) does the same from the environment.
const filters = [
  ...process.argv.slice(2),
  ...(process.env.BACKPACK_TEST_FILTER?.split(",").filter(Boolean) ?? []),
];
const files = find("dist/test")
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error("no test files matched");
  process.exit(1);
}
const args = [
  "--test",
  `--test-concurrency=${process.env.TEST_CONCURRENCY ?? 2}`,
  "--test-timeout=1200000",
  ...files,
];
// A run started from inside another test run (the newcomer check) must report on its own, not to the outer runner.
const env = { ...process.env };
delete env.NODE_TEST_CONTEXT;
const child = spawn(process.execPath, args, { stdio: "inherit", env });
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
