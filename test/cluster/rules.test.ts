import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { addUsageChange } from "../../src/cluster/changes.js";
import { decodeSnapshot, rawNode } from "../../src/cluster/layout.js";
import { parseQueueServers, parseServerIds, parseServerUrl, sanitizeBytes } from "../../src/cluster/rules.js";

const state = (nodes: Record<string, string>) =>
  new Map(Object.entries(nodes).map(([k, v]) => [k, rawNode(v)]));

void describe("cluster map rules", () => {
  void it("accepts http(s) URLs with a host and an explicit port only", () => {
    assert.deepEqual(parseServerUrl("http://one:10001/"), {
      scheme: "http",
      host: "one",
      port: 10001,
      url: "http://one:10001",
    });
    assert.equal(parseServerUrl("https://10.0.0.1:443").url, "https://10.0.0.1:443");
    assert.equal(parseServerUrl("http://[::1]:8080").host, "[::1]");
    for (const bad of [
      "http://one",
      "ftp://one:1",
      "one:10001",
      "http://one:0",
      "http://one:70000",
      "http://one:1/x",
      "http://u@one:1",
      "http://one:1?x",
    ]) {
      assert.throws(() => parseServerUrl(bad), { code: "INVALID_ARGUMENT" }, bad);
    }
  });

  void it("parses server id lists and Redis server lists", () => {
    assert.deepEqual(parseServerIds("1,4"), ["1", "4"]);
    assert.deepEqual(parseServerIds(" 1 , node-4 "), ["1", "node-4"]);
    assert.throws(() => parseServerIds("1,,4"), { code: "INVALID_ARGUMENT" });
    assert.throws(() => parseServerIds("1,1"), /listed twice/);
    assert.throws(() => parseServerIds("a/b"), { code: "INVALID_ARGUMENT" });
    assert.deepEqual(parseQueueServers("one:13001,two:13002"), [
      { host: "one", port: 13001 },
      { host: "two", port: 13002 },
    ]);
    assert.throws(() => parseQueueServers("one"), { code: "INVALID_ARGUMENT" });
    assert.throws(() => parseQueueServers("one:13001,"), { code: "INVALID_ARGUMENT" });
  });

  void it("reads byte counts leniently: garbage is 0, never NaN or negative", () => {
    for (const [v, want] of [
      [10, 10],
      ["10", 10],
      [null, 0],
      [undefined, 0],
      ["x", 0],
      [-5, 0],
      [Number.NaN, 0],
      [Infinity, 0],
      [1.7, 1],
      [{}, 0],
    ] as const) {
      assert.equal(sanitizeBytes(v), want, JSON.stringify(v) ?? "undefined");
    }
  });

  void it("decodes what the original and hand edits may have left", () => {
    const s = decodeSnapshot(
      state({
        "servers-map":
          '{"1":{"host":"one","port":10001},"2":{"host":"two"},"3":"junk","4":{"host":"h","port":"1","scheme":"https"}}',
        "shards-map": '{"1":{"nodes":[1,"4"],"read_only":"true"},"2":{"nodes":"junk"}}',
        "shard-size-1": '{"capacity":"100","current":null}',
        queue: '{"key":"q","servers":[{"host":"one","port":"13001"},{"host":"bad","port":"x"}]}',
      }),
    );
    assert.deepEqual(Object.keys(s.servers), ["1", "4"]);
    assert.equal(s.servers["1"]?.url, "http://one:10001");
    assert.equal(s.servers["4"]?.url, "https://h:1");
    assert.deepEqual(s.shards["1"], { id: "1", servers: ["1", "4"], enabled: false, capacity: 100, used: 0 });
    assert.deepEqual(s.shards["2"], { id: "2", servers: [], enabled: true, capacity: 0, used: 0 });
    assert.deepEqual(s.queue, { key: "q", servers: [{ host: "one", port: 13001 }] });
    assert.equal(decodeSnapshot(state({ "servers-map": "{}" })).initialized, false);
    // Ids come from requests and tasks: names of Object members are no shard and no server.
    for (const id of ["__proto__", "constructor", "toString", "hasOwnProperty"]) {
      assert.equal(s.shards[id], undefined, id);
      assert.equal(s.servers[id], undefined, id);
    }
  });

  void it("adds usage to a damaged size document without losing its other fields", () => {
    const plan = addUsageChange({ 1: 5, 2: 3, 3: 0, 9: 1 })(
      state({ "shard-size-1": '{"capacity":100,"current":null,"note":"x"}', "shard-size-2": "garbage" }),
      "here",
    );
    assert.deepEqual(plan.writes, [
      { node: "shard-size-1", value: { capacity: 100, current: 5, note: "x" } },
      { node: "shard-size-2", value: { current: 3, capacity: 0 } },
    ]);
    assert.deepEqual(plan.result, { skipped: ["9"] });
  });
});
