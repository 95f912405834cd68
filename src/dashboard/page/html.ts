/** The dashboard's page (`/ui`): the structure; app.js fills it in and keeps it current. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>backpack dashboard</title>
<link rel="icon" href="/ui/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/ui/app.css">
<script type="module" src="/ui/app.js"></script>
</head>
<body data-state="loading">
<header>
  <h1>backpack</h1>
  <p id="summary" aria-live="polite">loading…</p>
  <p id="updated" class="muted"></p>
</header>
<main>
  <section aria-labelledby="ring-h"><h2 id="ring-h">Ring</h2><div id="ring"></div></section>
  <section aria-labelledby="shards-h" class="wide"><h2 id="shards-h">Shards</h2><div id="shards" class="cards"></div></section>
  <section aria-labelledby="replication-h"><h2 id="replication-h">Replication and repair</h2><div id="replication"></div></section>
  <section aria-labelledby="traffic-h"><h2 id="traffic-h">Traffic</h2><div id="traffic"></div></section>
  <section aria-labelledby="lookup-h">
    <h2 id="lookup-h">Find a file</h2>
    <form id="lookup">
      <label for="address">Address (shard:key)</label>
      <input id="address" name="address" required placeholder="1:hi.txt" autocomplete="off" spellcheck="false">
      <button type="submit">Look up</button>
    </form>
    <div id="lookup-result" aria-live="polite"></div>
  </section>
  <section aria-labelledby="admin-h">
    <h2 id="admin-h">Admin</h2>
    <form id="admin">
      <label for="admin-token">Admin token</label>
      <input id="admin-token" type="password" autocomplete="off">
      <label for="admin-shard">Shard</label>
      <select id="admin-shard"></select>
      <div class="buttons">
        <button type="button" data-action="enable">Enable shard</button>
        <button type="button" data-action="disable">Disable shard</button>
        <button type="button" data-action="repair">Repair shard now</button>
        <button type="button" data-action="replay">Replay dead letters</button>
      </div>
    </form>
    <p id="admin-result" aria-live="polite"></p>
  </section>
</main>
</body>
</html>
`;

/** The tab's icon: a backpack's outline. */
export const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect x="7" y="9" width="18" height="20" rx="5" fill="#0969da"/><path d="M12 9V6a4 4 0 0 1 8 0v3" fill="none" stroke="#0969da" stroke-width="2.5"/><rect x="11" y="18" width="10" height="6" rx="2" fill="#fff"/></svg>`;
