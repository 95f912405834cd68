/**
 * The dashboard's script (served as /ui/app.js, run by the browser): polls `GET /status` every second and draws the cluster with DOM calls only (text goes in as text: file names are user data).
 * No framework, no build step beyond tsc.
 */
import type { NodeHealth, ShardHealth } from "../../queue/health.js";
import type { FileLocation, StatusDocument, StatusSample } from "../../client/coordinator-client.js";
import type { ServiceRingView } from "../../ring/service-ring.js";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";

type Child = Node | string | null | undefined | false;

function h(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

function s(tag: string, attrs: Record<string, string | number> = {}, text?: string): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function byId(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el;
}

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 || n >= 100 ? 0 : 1)} ${units[i]}`;
}

function ago(ms: number): string {
  const sec = Math.max(0, Math.round(ms / 1000));
  return sec < 120
    ? `${sec}s ago`
    : sec < 7200
      ? `${Math.round(sec / 60)}m ago`
      : `${Math.round(sec / 3600)}h ago`;
}

function numeric(a: string, b: string): number {
  return a.localeCompare(b, undefined, { numeric: true });
}

// ---- ring -------------------------------------------------------------------------------------------------

/** Members in the token's order (ring 0), then those no longer on it (dead, left). */
function ringOrder(ring: ServiceRingView): ServiceRingView["members"] {
  const known = new Map(ring.members.map((m) => [m.id, m]));
  const on = (ring.rings[0] ?? []).flatMap((id) => known.get(id) ?? []);
  const placed = new Set(on.map((m) => m.id));
  return [...on, ...ring.members.filter((m) => !placed.has(m.id))];
}

function renderRing(ring: ServiceRingView | null, servers: StatusDocument["cluster"]["servers"]): void {
  const box = byId("ring");
  if (!ring) {
    box.replaceChildren(
      h("p", {}, "This coordinator is not a member of a ring: health comes from timeouts only."),
    );
    return;
  }
  const n = ring.members.length;
  const size = 320;
  const r = 120;
  const svg = s("svg", {
    viewBox: `-40 0 ${size + 80} ${size}`,
    role: "img",
    "aria-labelledby": "ring-title",
  });
  svg.append(s("title", { id: "ring-title" }, `Ring of ${n} members`));
  svg.append(s("circle", { cx: size / 2, cy: size / 2, r, class: "ring-line" }));
  const list = h("ol", { class: "members" });
  // A storage node by its server id, as in the shards below.
  const serverOf = new Map(servers.map((x) => [x.url, x.id]));
  const name = (m: ServiceRingView["members"][number]): string => {
    const server = m.role === "node" ? serverOf.get(m.url) : undefined;
    return server === undefined ? m.role || "member" : `node ${server}`;
  };
  ringOrder(ring).forEach((m, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, n) - Math.PI / 2;
    const x = size / 2 + r * Math.cos(a);
    const y = size / 2 + r * Math.sin(a);
    const status = m.status.toLowerCase();
    const g = s("g", { class: `member ${status}`, "data-member": m.id });
    // Shape as well as colour: alive a circle, suspect a triangle, dead a cross.
    if (status === "alive") g.append(s("circle", { cx: x, cy: y, r: 9 }));
    else if (status === "suspect")
      g.append(s("path", { d: `M${x},${y - 10} L${x + 10},${y + 8} L${x - 10},${y + 8} Z` }));
    else
      g.append(
        s("path", {
          d: `M${x - 8},${y - 8} L${x + 8},${y + 8} M${x + 8},${y - 8} L${x - 8},${y + 8}`,
          class: "cross",
        }),
      );
    if (ring.self === m.id) g.append(s("circle", { cx: x, cy: y, r: 15, class: "self" }));
    const lx = size / 2 + (r + 26) * Math.cos(a);
    const ly = size / 2 + (r + 26) * Math.sin(a);
    g.append(s("text", { x: lx, y: ly + 4, "text-anchor": "middle" }, name(m)));
    svg.append(g);
    list.append(
      h(
        "li",
        { "data-member": m.id, "data-status": status },
        name(m),
        " ",
        h("span", { class: `badge ${status}` }, status),
        ` ${m.url || m.id}`,
        ring.self === m.id ? " (this coordinator)" : "",
      ),
    );
  });
  const facts = h(
    "p",
    {},
    `${n} members; lap ${ring.lapMs === null ? "—" : `${Math.round(ring.lapMs)} ms`}; tick ${ring.tick}`,
  );
  box.replaceChildren(h("div", { class: "ring-wrap" }, svg, h("div", {}, facts, list)));
}

// ---- shards -------------------------------------------------------------------------------------------------

function nodeState(suspect: boolean, n: NodeHealth | undefined): { label: string; cls: string } {
  if (n?.state === "refilling" && n.refill) {
    const pct = n.refill.missing > 0 ? Math.floor((100 * n.refill.done) / n.refill.missing) : 0;
    const eta = n.refill.etaSec === null ? "" : `, ${n.refill.etaSec}s left`;
    return { label: `refilling ${pct}% (${n.refill.done} of ${n.refill.missing}${eta})`, cls: "warn" };
  }
  if (n?.state === "down") return { label: `down: ${n.reason ?? "not compared"}`, cls: "bad" };
  if (n?.state === "behind") return { label: "behind", cls: "warn" };
  if (suspect) return { label: "suspect", cls: "warn" };
  return { label: "ok", cls: "ok" };
}

function renderShards(doc: StatusDocument): void {
  const health = new Map<string, ShardHealth>(doc.stats.repair.map((x) => [x.shard, x]));
  const servers = new Map(doc.cluster.servers.map((x) => [x.id, x]));
  const cards = [...doc.cluster.shards]
    .sort((a, b) => numeric(a.id, b.id))
    .map((shard) => {
      const hl = health.get(shard.id);
      const pct = shard.capacity > 0 ? Math.min(100, (100 * shard.used) / shard.capacity) : 0;
      const rows = shard.servers.map((id) => {
        const srv = servers.get(id);
        const st = nodeState(srv?.suspect ?? false, hl?.nodes[id]);
        return h(
          "tr",
          { "data-server": id },
          h("th", { scope: "row" }, `node ${id}`),
          h("td", {}, srv?.url ?? "?"),
          h("td", {}, h("span", { class: `badge ${st.cls}` }, st.label)),
        );
      });
      return h(
        "article",
        { class: "shard", "data-shard": shard.id },
        h(
          "h3",
          {},
          `Shard ${shard.id} `,
          h(
            "span",
            { class: `badge ${shard.enabled ? "ok" : "warn"}` },
            shard.enabled ? "writable" : "read-only",
          ),
        ),
        h("label", { for: `cap-${shard.id}` }, `${bytes(shard.used)} of ${bytes(shard.capacity)} used`),
        h("meter", {
          id: `cap-${shard.id}`,
          min: "0",
          max: "100",
          value: pct.toFixed(1),
          high: "85",
          optimum: "0",
        }),
        h("table", {}, h("caption", {}, `Nodes of shard ${shard.id}`), h("tbody", {}, ...rows)),
        h(
          "p",
          {},
          hl
            ? `${hl.underReplicated} under-replicated; ${hl.lastComparison ? `compared ${ago(doc.at - hl.lastComparison.finishedAt)}` : "not compared yet"}`
            : "no repair report yet",
        ),
      );
    });
  byId("shards").replaceChildren(...cards);
  const select = byId("admin-shard") as HTMLSelectElement;
  const chosen = select.value;
  select.replaceChildren(
    ...doc.cluster.shards
      .map((x) => x.id)
      .sort(numeric)
      .map((id) => h("option", { value: id }, `shard ${id}`)),
  );
  if (chosen) select.value = chosen;
}

// ---- charts -------------------------------------------------------------------------------------------------

/** A small line chart of one series over the history, with its latest value as text. */
function chart(title: string, points: (number | null)[], unit: string): HTMLElement {
  const w = 240;
  const hgt = 56;
  const values = points.map((p) => p ?? 0);
  const max = Math.max(1, ...values);
  const svg = s("svg", {
    viewBox: `0 0 ${w} ${hgt}`,
    class: "chart",
    role: "img",
    "aria-label": `${title} over the last minutes`,
  });
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const d = values
    .map(
      (v, i) =>
        `${i === 0 ? "M" : "L"}${(i * step).toFixed(1)},${(hgt - 4 - ((hgt - 8) * v) / max).toFixed(1)}`,
    )
    .join(" ");
  if (values.length > 0) svg.append(s("path", { d }));
  const last = points.at(-1);
  return h(
    "figure",
    {},
    svg,
    h(
      "figcaption",
      {},
      `${title}: `,
      h("strong", {}, last === null || last === undefined ? "—" : `${Math.round(last)}${unit}`),
    ),
  );
}

/** Per-second rates from consecutive samples of a counter. */
function rate(history: StatusSample[], pick: (x: StatusSample) => number): number[] {
  const out: number[] = [];
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1]!;
    const b = history[i]!;
    const sec = Math.max(0.001, (b.t - a.t) / 1000);
    out.push(Math.max(0, (pick(b) - pick(a)) / sec));
  }
  return out;
}

function renderReplication(doc: StatusDocument): void {
  const st = doc.stats;
  const hist = doc.history;
  const repairs = st.repair.reduce(
    (n, x) => n + x.repairs.copied + x.repairs.deleted + x.repairs.restored,
    0,
  );
  const scrub = st.repair
    .flatMap((x) => Object.entries(x.nodes))
    .map(([id, n]) => {
      const cur = n.scrub?.current;
      const pct =
        cur && cur.totalBytes > 0 ? `${Math.floor((100 * cur.doneBytes) / cur.totalBytes)}%` : "idle";
      return h(
        "li",
        {},
        `node ${id}: scrub ${pct}, ${n.scrub?.passesCompleted ?? 0} passes, ${n.scrub?.damagedFound ?? 0} damaged found`,
      );
    });
  byId("replication").replaceChildren(
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "queue"),
      h("dd", { id: "queue-depth" }, st.queue_length === null ? "unavailable" : String(st.queue_length)),
      h("dt", {}, "lag"),
      h("dd", {}, st.replication_lag_ms === null ? "—" : `${st.replication_lag_ms} ms`),
      h("dt", {}, "dead letters"),
      h("dd", { id: "dead-letters" }, st.dead_letters === null ? "—" : String(st.dead_letters)),
      h("dt", {}, "under-replicated"),
      h(
        "dd",
        { id: "under-replicated" },
        st.under_replicated_files === null ? "no report yet" : String(st.under_replicated_files),
      ),
      h("dt", {}, "repairs done"),
      h("dd", {}, String(repairs)),
    ),
    h(
      "div",
      { class: "charts" },
      chart(
        "replication lag",
        hist.map((x) => x.lagMs),
        " ms",
      ),
      chart(
        "queue depth",
        hist.map((x) => x.queue),
        "",
      ),
      chart(
        "repairs/s",
        rate(hist, (x) => x.repairs),
        "/s",
      ),
    ),
    h("ul", { class: "scrub" }, ...scrub),
  );
}

function renderTraffic(doc: StatusDocument): void {
  const st = doc.stats;
  const hist = doc.history;
  byId("traffic").replaceChildren(
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "uploads ok"),
      h("dd", { id: "uploads-ok" }, String(st.processed_uploads)),
      h("dt", {}, "failed"),
      h("dd", { id: "uploads-failed" }, String(st.failed_uploads)),
      h("dt", {}, "aborted"),
      h("dd", {}, String(st.aborted_uploads)),
      h("dt", {}, "bytes in"),
      h("dd", {}, bytes(st.processed_bytes)),
      h("dt", {}, "GETs"),
      h("dd", { id: "reads" }, String(st.processed_reads)),
      h("dt", {}, "bytes out"),
      h("dd", {}, bytes(st.read_bytes)),
    ),
    h(
      "div",
      { class: "charts" },
      chart(
        "uploads/s",
        rate(hist, (x) => x.uploads),
        "/s",
      ),
      chart(
        "GETs/s",
        rate(hist, (x) => x.reads),
        "/s",
      ),
      chart(
        "failed/s",
        rate(hist, (x) => x.failed),
        "/s",
      ),
    ),
  );
}

function renderSummary(doc: StatusDocument): void {
  const st = doc.stats;
  const under = st.under_replicated_files;
  byId("summary").textContent =
    `${doc.coordinator} · up ${st.uptime}s · ${st.writable_shards} of ${st.total_shards} shards writable · ` +
    `${bytes(st.used_size)} of ${bytes(st.total_size)} used · ` +
    (under === null ? "no repair report yet" : `${under} files under-replicated`);
}

// ---- polling ------------------------------------------------------------------------------------------------

async function poll(): Promise<void> {
  try {
    const status = await fetch("/status", { cache: "no-store" });
    if (!status.ok) throw new Error(`/status answered ${status.status}`);
    const doc = (await status.json()) as StatusDocument;
    renderSummary(doc);
    renderShards(doc);
    renderReplication(doc);
    renderTraffic(doc);
    renderRing(doc.ring, doc.cluster.servers);
    byId("updated").textContent = `updated ${new Date(doc.at).toLocaleTimeString()}`;
    document.body.dataset.state = "live";
  } catch (err) {
    byId("updated").textContent = `not updated: ${(err as Error).message}`;
    document.body.dataset.state = "stale";
  } finally {
    setTimeout(() => void poll(), POLL_MS);
  }
}

// ---- lookup and admin ---------------------------------------------------------------------------------------

async function lookup(address: string): Promise<void> {
  const out = byId("lookup-result");
  const i = address.indexOf(":");
  if (i <= 0) {
    out.replaceChildren(h("p", { class: "error" }, "An address is <shard>:<key>, e.g. 1:hi.txt"));
    return;
  }
  const key = address
    .slice(i + 1)
    .split("/")
    .map(encodeURIComponent)
    .join("/");
  const res = await fetch(`/locate/${encodeURIComponent(address.slice(0, i))}%3A${key}`);
  if (res.status === 404) {
    out.replaceChildren(h("p", {}, `${address}: not found on any node of its shard`));
    return;
  }
  if (!res.ok) {
    out.replaceChildren(
      h(
        "p",
        { class: "error" },
        `${address}: ${((await res.json()) as { error?: string }).error ?? res.status}`,
      ),
    );
    return;
  }
  const f = (await res.json()) as FileLocation;
  out.replaceChildren(
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "size"),
      h("dd", {}, `${f.size} bytes`),
      h("dt", {}, "checksum"),
      h("dd", {}, `${f.checksum} (CRC-32)`),
      h("dt", {}, "content type"),
      h("dd", {}, f.contentType),
      h("dt", {}, "version"),
      h("dd", {}, f.version ?? "—"),
    ),
    h(
      "table",
      {},
      h("caption", {}, `Nodes of shard ${f.address.slice(0, f.address.indexOf(":"))}`),
      h(
        "tbody",
        {},
        ...f.nodes.map((n) =>
          h(
            "tr",
            { "data-server": n.server },
            h("th", { scope: "row" }, `node ${n.server}`),
            h(
              "td",
              {},
              h(
                "span",
                { class: `badge ${n.holds === "holds" ? "ok" : "warn"}` },
                n.holds === "holds" ? "verified copy" : n.holds,
              ),
            ),
            h(
              "td",
              {},
              n.queued.length > 0
                ? `${n.queued[0]!.op} queued (${n.queued[0]!.state})`
                : n.repair
                  ? "being repaired"
                  : "",
            ),
          ),
        ),
      ),
    ),
  );
}

async function admin(action: string): Promise<void> {
  const out = byId("admin-result");
  const token = (byId("admin-token") as HTMLInputElement).value;
  const shard = (byId("admin-shard") as HTMLSelectElement).value;
  const path =
    action === "enable" || action === "disable"
      ? `/admin/shards/${encodeURIComponent(shard)}/${action}`
      : action === "replay"
        ? "/admin/dead-letters/replay"
        : `/admin/repair?shard=${encodeURIComponent(shard)}`;
  const res = await fetch(path, {
    method: "POST",
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const body = (await res.json().catch(() => ({}))) as { error?: string; replayed?: number };
  out.className = res.ok ? "" : "error";
  out.textContent = res.ok
    ? action === "replay"
      ? `${body.replayed ?? 0} dead letters replayed`
      : action === "repair"
        ? `repair of shard ${shard} requested`
        : `shard ${shard} ${action}d`
    : `refused: ${body.error ?? res.status}`;
}

byId("lookup").addEventListener("submit", (e) => {
  e.preventDefault();
  void lookup((byId("address") as HTMLInputElement).value.trim());
});
for (const button of document.querySelectorAll<HTMLButtonElement>("#admin button[data-action]")) {
  button.addEventListener("click", (e) => {
    e.preventDefault();
    void admin(button.dataset.action ?? "");
  });
}
void poll();
