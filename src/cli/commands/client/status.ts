import { BackpackError } from "../../../common/errors.js";
import { formatBytes } from "../../../common/units.js";
import type { ClusterView, CoordinatorStats } from "../../../client/coordinator-client.js";
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
  shard 1  rw  [1, 4]  1.2mb / 100gb (0%)
  ...
  node 1  http://127.0.0.1:12011  ok
  node 4  http://127.0.0.1:12014  suspect (failed recently)
  overall: 3.4mb / 300gb (0%), 3 of 3 shards writable
With --json: {"coordinator","stats":<GET /stats>,"cluster":<GET /cluster>}.

Exit codes: 0 shown; 1 the coordinator is unreachable; 2 wrong arguments.`,
  },

  async run(args, io) {
    const ctx = clientContext(args, io, 2);
    try {
      const [stats, view] = await Promise.all([
        ctx.client.stats(ctx.base),
        ctx.client.cluster(ctx.base),
      ]).catch((err: unknown) => {
        throw new BackpackError("UNAVAILABLE", explain(err, ctx.base));
      });
      if (args.options.json === true) {
        io.stdout(JSON.stringify({ coordinator: ctx.base, stats, cluster: view }) + "\n");
      } else {
        io.stdout(render(ctx.base, stats, view));
      }
      return 0;
    } finally {
      await ctx.close();
    }
  },
};

export function render(base: string, stats: CoordinatorStats, view: ClusterView): string {
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
  for (const s of [...view.shards].sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }))) {
    lines.push(
      `shard ${s.id}  ${s.enabled ? "rw" : "ro"}  [${s.servers.join(", ")}]  ` +
        `${formatBytes(s.used)} / ${formatBytes(s.capacity)} (${pct(s.used, s.capacity)})`,
    );
  }
  for (const n of [...view.servers].sort((a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }))) {
    lines.push(`node ${n.id}  ${n.url}  ${n.suspect ? "suspect (failed recently)" : "ok"}`);
  }
  lines.push(
    `overall: ${formatBytes(stats.used_size)} / ${formatBytes(stats.total_size)} (${pct(stats.used_size, stats.total_size)}), ` +
      `${stats.writable_shards} of ${stats.total_shards} shards writable`,
  );
  return lines.join("\n") + "\n";
}
