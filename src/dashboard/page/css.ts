/** The dashboard's style sheet (`/ui/app.css`): readable from 390 px wide up; states by label and shape, not colour alone. */
export const PAGE_CSS = `
:root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #fff; --panel: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 12px 20px; border-bottom: 1px solid var(--line); }
header h1 { margin: 0; font-size: 1.3rem; }
header p { margin: 2px 0; }
.muted, #updated { color: var(--muted); font-size: 0.85rem; }
body[data-state="stale"] #updated { color: var(--bad); font-weight: 600; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 16px; padding: 16px 20px; }
section { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { margin: 0 0 8px; font-size: 1.05rem; }
h3 { margin: 0 0 6px; font-size: 1rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
.shard { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 10px; }
meter { width: 100%; height: 14px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; font-size: 0.9rem; }
caption { text-align: left; color: var(--muted); font-size: 0.8rem; }
th, td { text-align: left; padding: 3px 6px 3px 0; border-top: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; border: 1px solid currentColor; font-size: 0.8rem; }
.badge.ok, .badge.alive { color: var(--ok); }
.badge.ok::before, .badge.alive::before { content: "● "; }
.badge.warn, .badge.suspect { color: var(--warn); }
.badge.warn::before, .badge.suspect::before { content: "▲ "; }
.badge.bad, .badge.dead { color: var(--bad); }
.badge.bad::before, .badge.dead::before { content: "✕ "; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0 0 8px; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; flex: 1 1 160px; }
figcaption { font-size: 0.85rem; }
svg.chart { width: 100%; height: 56px; background: var(--bg); border: 1px solid var(--line); border-radius: 4px; }
svg.chart path { fill: none; stroke: #0969da; stroke-width: 1.5; }
.ring-wrap { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; }
.ring-wrap svg { width: 260px; max-width: 100%; }
.ring-line { fill: none; stroke: var(--line); stroke-width: 2; }
.member circle, .member path { stroke-width: 2; }
.member.alive circle { fill: var(--ok); }
.member.suspect path { fill: var(--warn); }
.member.dead path, .member.left path, .member.faulty path { stroke: var(--bad); stroke-width: 4; fill: none; }
.member text { font-size: 11px; fill: var(--fg); }
.self { fill: none; stroke: #0969da; stroke-width: 3; }
.members { margin: 0; padding-left: 20px; font-size: 0.85rem; }
form { display: flex; flex-wrap: wrap; gap: 6px 8px; align-items: center; }
form label { font-size: 0.85rem; color: var(--muted); }
input, select, button { font: inherit; padding: 4px 8px; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); }
button { cursor: pointer; background: #f3f4f6; }
button:focus-visible, input:focus-visible, select:focus-visible { outline: 2px solid #0969da; outline-offset: 1px; }
.buttons { display: flex; flex-wrap: wrap; gap: 6px; width: 100%; }
.error { color: var(--bad); }
.scrub { margin: 6px 0 0; padding-left: 18px; font-size: 0.85rem; }
@media (max-width: 480px) { main { padding: 8px; grid-template-columns: 1fr; } header { padding: 8px 10px; } }
`;
