import { execFile } from "node:child_process";
import { readFile, rename, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { toBackpackError } from "../../../common/errors.js";
import { createLogger } from "../../../common/logger.js";
import { openClusterMap, targetFromArgs } from "../../../cluster/open.js";
import type { ClusterSnapshot } from "../../../cluster/types.js";
import { renderNginxConfig } from "../../../coordinator/nginx-config.js";
import type { ServiceRingView } from "../../../ring/service-ring.js";
import { authority } from "../../../ring/url-watch.js";
import { durationOption } from "../../options.js";
import { UsageError } from "../../args.js";
import { optString, requirePositional, type Command } from "../../command.js";

const run = promisify(execFile);

export const command: Command = {
  spec: {
    name: "backpack admin nginx-config",
    summary:
      "Prints an nginx config for reads (GET /<shard>:<key>) with failover across each shard's nodes, for the current shards; --watch keeps a file current and reloads nginx.",
    positionals: [
      {
        name: "zk",
        description: "ZooKeeper servers host:port,... (or file:<path> for an embedded cluster map file)",
      },
      { name: "root", description: "ZooKeeper root path of the cluster, e.g. /backpack" },
    ],
    options: [
      {
        name: "listen",
        type: "string",
        description: "nginx listen address, host:port or port",
        default: "80",
      },
      { name: "server-name", type: "string", description: "nginx server_name", default: "_" },
      {
        name: "output",
        type: "string",
        short: "o",
        description: "write the config to this file (replaced atomically) instead of printing it",
      },
      {
        name: "watch",
        type: "boolean",
        description: "keep running: rewrite --output and reload nginx whenever shards or servers change",
      },
      {
        name: "ring-every",
        type: "string",
        description:
          "in --watch mode, ask the ring this often which nodes are dead (GET /ring on a node) and mark them down; 0: never",
        default: "1s",
      },
      {
        name: "reload-command",
        type: "string",
        description: "shell command run after the file changed in --watch mode",
        default: "nginx -s reload",
      },
    ],
    notes: `
The config is a snippet for nginx's http context (e.g. /etc/nginx/conf.d/backpack.conf), as the original's
recipe: an upstream per shard, "proxy_next_upstream error timeout http_404 http_502 http_503 http_504", and
403 for every method but GET and HEAD. Two traps of the recipe are fixed: a file that exists nowhere is a 404
even while a replica is down (not a 502), and a node is never locked out after a refused connection
(max_fails=0), so nginx serves as soon as any replica is up. Read-only shards are served too. With --watch,
nodes the ring holds dead or left (asked every --ring-every of a node's GET /ring) are marked "down", so
nginx does not wait on a frozen one; never every node of a shard.

Output: the config on stdout (or in --output). With --watch, JSON log lines on stderr: "watching" once the file is
current, "written" each time it changes, then "reloaded" (or "update failed" with the reason); runs until SIGINT or SIGTERM and exits 0.

Exit codes: 0 done; 1 the cluster map cannot be read or the file cannot be written; 2 wrong arguments.

Example:
  backpack-coordinator-nginx-config zk1:2181 /backpack --listen one:80 > /etc/nginx/conf.d/backpack.conf
  backpack-coordinator-nginx-config zk1:2181 /backpack --listen 80 --watch -o /etc/nginx/conf.d/backpack.conf`,
  },

  async run(args, io) {
    const zk = requirePositional(args, "zk");
    const root = requirePositional(args, "root");
    const listen = optString(args, "listen") ?? "80";
    if (!/^(\S+:)?\d{1,5}$/.test(listen))
      throw new UsageError(`--listen must be host:port or a port, got "${listen}"`);
    const serverName = optString(args, "server-name") ?? "_";
    if (!/^[A-Za-z0-9_.*-]+$/.test(serverName))
      throw new UsageError(`--server-name is not a host name: "${serverName}"`);
    const output = optString(args, "output");
    const watch = args.options.watch === true;
    if (watch && output === undefined) throw new UsageError("--watch needs --output <file>");
    const reloadCommand = optString(args, "reload-command") ?? "nginx -s reload";
    const source = `${zk} ${root}`;
    const ringEveryMs = durationOption(args, "ring-every") ?? 1000;
    let down = new Set<string>();
    const render = (s: ClusterSnapshot): string => renderNginxConfig(s, { listen, serverName, source, down });

    const log = createLogger({ level: watch ? "info" : "warn", name: "nginx-config" });
    const map = openClusterMap(targetFromArgs(zk, root), { log });
    await map.start();
    try {
      if (!watch) {
        const text = render(map.snapshot());
        if (output === undefined) io.stdout(text);
        else await writeIfChanged(output, text);
        return 0;
      }
      const file = output as string;
      let tail: Promise<void> = Promise.resolve();
      const update = (snapshot: ClusterSnapshot): void => {
        tail = tail.then(async () => {
          try {
            if (!(await writeIfChanged(file, render(snapshot)))) return;
            log.info({ file, shards: Object.keys(snapshot.shards).length }, "written");
            const { stderr } = await run("/bin/sh", ["-c", reloadCommand]);
            log.info({ command: reloadCommand, stderr: stderr.trim() }, "reloaded");
          } catch (err) {
            log.error({ err: toBackpackError(err).message, command: reloadCommand }, "update failed");
          }
        });
      };
      const unsubscribe = map.onChange(update);
      update(map.snapshot());
      // Also a periodic check (a missed change is caught within a minute); the timer keeps the process alive.
      const periodic = setInterval(() => update(map.snapshot()), 60_000);
      const ring =
        ringEveryMs > 0
          ? setInterval(() => {
              void ringDown(map.snapshot()).then((found) => {
                if (found === undefined || sameSet(found, down)) return;
                log.info({ down: [...found].sort() }, "ring verdicts changed");
                down = found;
                update(map.snapshot());
              });
            }, ringEveryMs)
          : undefined;
      await tail;
      log.info({ file, reloadCommand }, "watching");
      if (!io.stopSignal.aborted) {
        await new Promise<void>((resolve) =>
          io.stopSignal.addEventListener("abort", () => resolve(), { once: true }),
        );
      }
      unsubscribe();
      clearInterval(periodic);
      clearInterval(ring);
      await tail;
      log.flush();
      return 0;
    } finally {
      await map.stop();
    }
  },
};

/** Replaces `file` (temp file + rename, so nginx never reads half a config) when its text differs. */
async function writeIfChanged(file: string, text: string): Promise<boolean> {
  const old = await readFile(file, "utf8").catch(() => undefined);
  if (old === text) return false;
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
  return true;
}

/**
 * Servers the ring holds dead or left, as the first node of the map that answers `GET /ring` sees them;
 * undefined when none answers (or their ring is off): then nothing is marked down.
 */
async function ringDown(snapshot: ClusterSnapshot): Promise<Set<string> | undefined> {
  for (const server of Object.values(snapshot.servers)) {
    let view: ServiceRingView;
    try {
      const res = await fetch(`${server.url}/ring`, { signal: AbortSignal.timeout(1000) });
      if (!res.ok) continue;
      view = (await res.json()) as ServiceRingView;
    } catch {
      continue;
    }
    const status = new Map(view.members.map((m) => [authority(m.url || `http://${m.addr}`), m.status]));
    const down = Object.entries(snapshot.servers).filter(([, s]) => {
      const st = status.get(authority(s.url));
      return st === "dead" || st === "left";
    });
    return new Set(down.map(([id]) => id));
  }
  return undefined;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}
