import { BackpackError } from "../../../common/errors.js";
import { formatBytes, formatDuration } from "../../../common/units.js";
import type { ClusterView, CoordinatorStats, ShardHealth } from "../../../client/coordinator-client.js";
import type { NodeHealth } from "../../../queue/health.js";
import type { ServiceRingView } from "../../../ring/service-ring.js";
import type { Command } from "../../command.js";
import { clientContext, explain, JSON_OPTION, TO_OPTION } from "./common.js";

export const command: Command = {
  spec: {
    name: "backpack status",
    summary:
      "Shows the cluster as a coordinator sees it: shards, nodes, usage, queue depth and replication lag.",
    positionals: [],
    options: [TO_OPTION, JSON_OPTION],
    notes: `
Output:
  coordinator http://127.0.0.1:12001  up 42s  uploads 120 ok / 1 failed
  queue: 0 tasks, lag 0 ms
  repair: 0 files under-replicated
  shard 1  rw  [1, 4]  1.2mb / 100gb (0%)  compared 12s ago, 0 under-replicated, repaired 3 copied / 0 deleted / 1 restored
  ...
  node 1  http://127.0.0.1:12011  ok  scrub 42% of pass 3
  node 4  http://127.0.0.1:12014  refilling: 1200 of 5000 files (150/s, about 25s left)
  overall: 3.4mb / 300gb (0%), 3 of 3 shards writable
  ring: 9 members, 9 alive, 0 suspect, 0 dead, 0 left; lap 0.93 s, tick 42
    coordinator  http://127.0.0.1:12001  alive
    node 1       http://127.0.0.1:12011  alive
    ...
A node is ok, suspect (the coordinator saw it fail recently), refilling (repair is copying what it lacks),
behind (the last comparison could not give it everything) or down (repair could not compare it; the reason
follows). Repair figures are what the replicators last reported (docs/operations.md, "Health").
With --json: the coordinator's GET /status ({"coordinator","at","stats":<GET /stats>,"cluster":<GET /cluster>,
"history":[...],"ring":<GET /ring, or null when its ring is off>}, the document the dashboard at /ui shows;
stats.repair holds each shard's health as reported). A ring member is alive, suspect (not
answering probes; coordinators already try it last), dead or left (a clean stop).

Exit codes: 0 shown; 1 the coordinator is unreachable; 2 wrong arguments.`,
  },

  async run(args, io) {
    const ctx = clientContext(args, io, 2);
    try {
      const doc = await ctx.client.status(ctx.base).catch((err: unknown) => {
        throw new BackpackError("UNAVAILABLE", explain(err, ctx.base));
      });
      if (args.options.json === true) {
        io.stdout(JSON.stringify(doc) + "\n");
      } else {
        io.stdout(
          render(ctx.base, doc.stats, doc.cluster, doc.at) + renderRing(doc.ring, doc.cluster.servers),
        );
      }
      return 0;
    } finally {
      await ctx.close();
    }
  },
};

export function render(
  base: string,
  stats: CoordinatorStats,
  view: ClusterView,
  now: number = Date.now(),
): string {
  const pct = (used: number, total: number): string => `${total > 0 ? Math.round((used / total) * 100) : 0}%`;
  const lines = [
    `coordinator ${base}  up ${stats.uptime}s  uploads ${stats.processed_uploads} ok / ${stats.failed_uploads} failed`,
    stats.queue_length === null
      ? "queue: unavailable (uploads are copied directly)"
      : `queue: ${stats.queue_length} tasks, lag ${stats.replication_lag_ms ?? 0} ms` +
        (stats.queue_unreachable
          ? `, ${stats.queue_unreachable} waiting for a node that is down or full`
          : "") +
        (stats.throttled_uploads > 0
          ? `, ${stats.throttled_uploads} uploads waited for the replicators`
          : ""),
  ];
  const health = new Map((stats.repair ?? []).map((h) => [h.shard, h]));
  const nodeHealth = new Map<string, NodeHealth>();
  for (const h of health.values())
    for (const [server, n] of Object.entries(h.nodes)) nodeHealth.set(server, n);
  lines.push(
    stats.under_replicated_files === null || stats.under_replicated_files === undefined
      ? "repair: no report yet (no replicator has compared a shard, or the queue does not answer)"
      : `repair: ${stats.under_replicated_files} files under-replicated`,
  );
  for (const s of [...view.shards].sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }))) {
    const h = health.get(s.id);
    lines.push(
      `shard ${s.id}  ${s.enabled ? "rw" : "ro"}  [${s.servers.join(", ")}]  ` +
        `${formatBytes(s.used)} / ${formatBytes(s.capacity)} (${pct(s.used, s.capacity)})` +
        (h ? `  ${shardHealthText(h, now)}` : ""),
    );
  }
  for (const n of [...view.servers].sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }))) {
    lines.push(`node ${n.id}  ${n.url}  ${nodeText(n.suspect, nodeHealth.get(n.id))}`);
  }
  lines.push(
    `overall: ${formatBytes(stats.used_size)} / ${formatBytes(stats.total_size)} (${pct(stats.used_size, stats.total_size)}), ` +
      `${stats.writable_shards} of ${stats.total_shards} shards writable`,
  );
  return lines.join("\n") + "\n";
}

/** The ring as the coordinator sees it: every member with its role, URL and status. */
export function renderRing(ring: ServiceRingView | null, servers: ClusterView["servers"] = []): string {
  if (ring === null) return "ring: off on this coordinator (started with --no-ring)\n";
  const count = (status: string): number => ring.members.filter((m) => m.status === status).length;
  const lap = ring.lapMs === null ? "not measured yet" : `${(ring.lapMs / 1000).toFixed(2)} s`;
  const lines = [
    `ring: ${ring.members.length} members, ${count("alive")} alive, ${count("suspect")} suspect, ` +
      `${count("dead")} dead, ${count("left")} left; lap ${lap}, tick ${ring.tick}`,
  ];
  const order = ["coordinator", "replicator", "node"];
  const rank = (role: string): number => (order.includes(role) ? order.indexOf(role) : order.length);
  const members = [...ring.members].sort((a, b) => rank(a.role) - rank(b.role) || a.url.localeCompare(b.url));
  const serverOf = new Map(servers.map((sv) => [sv.url, sv.id]));
  for (const m of members) {
    const id = serverOf.get(m.url);
    const name = id === undefined ? m.role || "member" : `${m.role} ${id}`;
    lines.push(`  ${name.padEnd(11)}  ${m.url || m.addr}  ${m.status}`);
  }
  return lines.join("\n") + "\n";
}

function shardHealthText(h: ShardHealth, now: number): string {
  const last = h.lastComparison;
  const when = last
    ? `compared ${formatDuration(Math.max(0, now - last.finishedAt))} ago`
    : "not compared yet";
  const running = h.running
    ? `, comparing now (${h.running.repairsDone} of ${h.running.repairsNeeded} repairs)`
    : "";
  const r = h.repairs;
  const unrepairable = last && last.unrepairable > 0 ? `, ${last.unrepairable} unrepairable` : "";
  return (
    `${when}${running}, ${h.underReplicated} under-replicated${unrepairable}, ` +
    `repaired ${r.copied} copied / ${r.deleted} deleted / ${r.restored} restored`
  );
}

function nodeText(suspect: boolean, n: NodeHealth | undefined): string {
  const parts: string[] = [];
  if (n?.state === "refilling" && n.refill) {
    const { missing, done, perSec, etaSec } = n.refill;
    const eta = etaSec === null ? "" : `, about ${formatDuration(etaSec * 1000)} left`;
    parts.push(`refilling: ${done} of ${missing} files (${perSec}/s${eta})`);
  } else if (n?.state === "down") {
    parts.push(`down (${n.reason ?? "not compared"})`);
  } else if (n?.state === "behind" || n?.state === "refilling") {
    parts.push(n.state);
  } else {
    parts.push(suspect ? "suspect (failed recently)" : "ok");
  }
  const scrub = n?.scrub;
  if (scrub && scrub.rateBytesPerSec > 0) {
    const cur = scrub.current;
    parts.push(
      cur && cur.totalBytes > 0
        ? `scrub ${Math.floor((100 * cur.doneBytes) / cur.totalBytes)}% of pass ${scrub.passesCompleted + 1}`
        : `scrub: ${scrub.passesCompleted} passes done`,
    );
    if (scrub.damagedFound > 0) parts.push(`${scrub.damagedFound} damaged found`);
  }
  return parts.join("  ");
}
