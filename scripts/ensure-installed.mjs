// Makes `npm start`, `npm test`, `npm link` and a global install work on a fresh clone: installs dependencies
// when node_modules is missing or older than package-lock.json, then builds (incrementally). Also the
// `prepare` script, which npm runs after `npm ci`/`npm install` (dependencies are there: it only builds), and
// for `npm link`, `npm install -g .` and `npm pack` (on a fresh clone nothing is installed yet: it installs).
import { execSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";

const lock = "package-lock.json";
const marker = "node_modules/.package-lock.json";
// Set for the `npm ci` below: its own `prepare` run must not install again.
const installing = process.env.BACKPACK_INSTALLING === "1";
const stale = !existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs;
const duringNpmInstall =
  process.env.npm_lifecycle_event === "prepare" && existsSync("node_modules/typescript/package.json");
if (stale && !installing && !duringNpmInstall) {
  console.error("backpack: installing dependencies (npm ci)...");
  execSync("npm ci --no-audit --no-fund", {
    stdio: "inherit",
    env: { ...process.env, BACKPACK_INSTALLING: "1" },
  });
}
console.error("backpack: building...");
execSync("npm run --silent build", { stdio: "inherit" });
