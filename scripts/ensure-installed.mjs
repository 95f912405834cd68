// Makes `npm start` and `npm test` work on a fresh clone: installs dependencies when node_modules is missing
// or older than package-lock.json, then builds (incrementally).
import { execSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";

const lock = "package-lock.json";
const marker = "node_modules/.package-lock.json";
if (!existsSync(marker) || statSync(marker).mtimeMs < statSync(lock).mtimeMs) {
  console.error("backpack: installing dependencies (npm ci)...");
  execSync("npm ci --no-audit --no-fund", { stdio: "inherit" });
}
console.error("backpack: building...");
execSync("npm run --silent build", { stdio: "inherit" });
