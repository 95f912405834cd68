// The tests run real ZooKeeper, Redis, nginx, wrk, Chromium (the dashboard's browser tests) and rclone (an S3 client) from Debian's packages. When one is missing, install
// them (as root with apt-get) or say exactly what to install.
import { execSync } from "node:child_process";
import { existsSync } from "node:fs";

const needs = [
  { pkg: "zookeeper", present: () => existsSync("/usr/share/java/zookeeper.jar") },
  { pkg: "redis-server", present: () => has("redis-server") },
  { pkg: "nginx-light", present: () => has("nginx") || existsSync("/usr/sbin/nginx") },
  { pkg: "wrk", present: () => has("wrk") },
  { pkg: "chromium", present: () => existsSync("/usr/bin/chromium") },
  { pkg: "rclone", present: () => has("rclone") },
];

function has(cmd) {
  try {
    execSync(`command -v ${cmd}`, { stdio: "ignore", shell: "/bin/sh" });
    return true;
  } catch {
    return false;
  }
}

const missing = needs.filter((n) => !n.present()).map((n) => n.pkg);
if (missing.length > 0) {
  const isRoot = process.getuid?.() === 0;
  if (isRoot && has("apt-get")) {
    console.error(`backpack: installing test servers from Debian's packages: ${missing.join(" ")}`);
    execSync("apt-get update -qq", { stdio: "inherit" });
    execSync(
      `DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${missing.join(" ")}`,
      {
        stdio: "inherit",
        shell: "/bin/sh",
      },
    );
  } else {
    console.error(
      `backpack: the tests need these Debian packages: ${missing.join(" ")}\n` +
        `  install them with: sudo apt-get install ${missing.join(" ")}`,
    );
    process.exit(1);
  }
}
