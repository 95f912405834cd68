import { test } from "node:test";
import assert from "node:assert/strict";
import { hostPortOf, renderNginxConfig } from "../../src/coordinator/nginx-config.js";
import type { ClusterSnapshot } from "../../src/cluster/types.js";
import { NO_SETTINGS } from "../../src/cluster/settings.js";

const snapshot: ClusterSnapshot = {
  initialized: true,
  queue: undefined,
  settings: NO_SETTINGS,
  s3: { keys: {}, buckets: {} },
  servers: {
    "1": { id: "1", url: "http://one:10001" },
    "2": { id: "2", url: "http://one:10002" },
    "4": { id: "4", url: "http://one:10004" },
    "5": { id: "5", url: "http://one:10005" },
  },
  shards: {
    "10": { id: "10", servers: ["2", "5"], enabled: false, capacity: 1, used: 0 },
    "1": { id: "1", servers: ["1", "4"], enabled: true, capacity: 1, used: 0 },
    "bad id": { id: "bad id", servers: ["1"], enabled: true, capacity: 1, used: 0 },
    "3": { id: "3", servers: ["9"], enabled: true, capacity: 1, used: 0 },
  },
};

void test("the generated config follows the seed's recipe with both traps fixed", () => {
  const conf = renderNginxConfig(snapshot, { listen: "one:80", source: "zk:2181 /backpack" });
  assert.match(
    conf,
    /upstream backpack-shard-1 \{\n {4}server one:10001 max_fails=0;.*\n {4}server one:10004 max_fails=0;/,
  );
  assert.match(conf, /upstream backpack-shard-10 \{/);
  assert.ok(conf.indexOf("backpack-shard-1 {") < conf.indexOf("backpack-shard-10 {"), "numeric order");
  // Node connections are kept open for as many concurrent reads as a busy front has (HTTP/1.1, no Connection).
  assert.match(conf, /\n {4}keepalive 64;\n\}/);
  assert.match(conf, /proxy_http_version 1\.1;\n\s+proxy_set_header Connection "";/);
  assert.match(conf, /proxy_next_upstream error timeout http_404 http_502 http_503 http_504;/);
  assert.match(conf, /if \(\$request_method !~ \^\(GET\|HEAD\)\$\) \{\n\s+return 403;/);
  assert.match(conf, /location \^~ \/1: \{\n\s+proxy_pass http:\/\/backpack-shard-1\/;/);
  assert.match(conf, /error_page 502 503 504 = @backpack_failed;/);
  assert.match(conf, /\$upstream_status ~ "404"/);
  assert.match(conf, /listen one:80;/);
  assert.doesNotMatch(conf, /fail_timeout/);
  assert.match(conf, /# shard "bad id" skipped/);
  assert.match(conf, /# shard 3 has no reachable server/);
  assert.doesNotMatch(conf, /backpack-shard-3 /);
});

void test("hostPortOf accepts http URLs only", () => {
  assert.equal(hostPortOf("http://one:10001/"), "one:10001");
  assert.equal(hostPortOf("http://one"), "one:80");
  assert.equal(hostPortOf("http://[::1]:5"), "[::1]:5");
  assert.equal(hostPortOf("https://one:1"), undefined);
  assert.equal(hostPortOf("not a url"), undefined);
  assert.equal(hostPortOf(undefined), undefined);
});

void test("servers the ring holds dead are marked down, but never every server of a shard", () => {
  const conf = renderNginxConfig(snapshot, { listen: "80", down: new Set(["1", "2", "5"]) });
  assert.match(conf, /server one:10001 max_fails=0 down;/);
  assert.match(conf, /server one:10004 max_fails=0;/);
  // Shard 10 has only dead servers: none is marked, nginx keeps trying them.
  assert.match(conf, /server one:10002 max_fails=0;/);
  assert.match(conf, /server one:10005 max_fails=0;/);
});
