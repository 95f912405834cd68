import assert from "node:assert/strict";
import { test } from "node:test";
import { devLayout, fixedPorts } from "../../src/dev/layout.js";

test("the default layout is the seed's: shards 1,4 / 2,5 / 3,6", () => {
  const layout = devLayout({ shards: 3, replicas: 2, coordinators: 2, basePort: 12001 });
  assert.deepEqual(
    layout.shards.map((s) => s.servers),
    [
      ["1", "4"],
      ["2", "5"],
      ["3", "6"],
    ],
  );
  assert.deepEqual(layout.coordinatorPorts, [12001, 12002]);
  assert.equal(layout.replicatorPort, 12003);
  assert.deepEqual(
    layout.servers.map((s) => s.port),
    [12011, 12012, 12013, 12014, 12015, 12016],
  );
  // Each coordinator's S3 listener comes after the nodes.
  assert.deepEqual(layout.s3Ports, [12017, 12018]);
  assert.equal(new Set(fixedPorts(layout)).size, 11);
});

test("other shapes: every server in exactly one shard, R distinct servers per shard", () => {
  const layout = devLayout({ shards: 4, replicas: 3, coordinators: 1, basePort: 0 });
  const all = layout.shards.flatMap((s) => s.servers);
  assert.equal(new Set(all).size, 12);
  assert.ok(layout.shards.every((s) => new Set(s.servers).size === 3));
  assert.deepEqual(fixedPorts(layout), []);
});
