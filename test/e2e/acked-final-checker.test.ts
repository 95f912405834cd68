import assert from "node:assert/strict";
import { test } from "node:test";
import {
  checkFinalState,
  classify,
  formatVerdict,
  type OpRecord,
  type ReplicaRead,
} from "../helpers/acked-history.js";
import { bodyFor, digestOf, tagOf, Workload, type Answer } from "../helpers/acked-workload.js";

/** The verdict logic of "acknowledged means final" (test/helpers/acked-history.ts), on hand-made histories. */

let nextId = 1;
let now = 0;
function op(kind: "put" | "delete", fields: Partial<OpRecord> & Pick<OpRecord, "outcome">): OpRecord {
  const id = nextId++;
  now += 10;
  const status =
    fields.outcome === "ack" ? (kind === "put" ? 200 : 204) : fields.outcome === "refused" ? 404 : 503;
  return {
    id,
    client: 1,
    key: "k",
    kind,
    coordinator: 1 + (id % 2),
    startMs: now,
    endMs: now + 5,
    status,
    detail: "",
    ...(kind === "put" ? { digest: `d${id}`, size: 100 + id } : {}),
    ...fields,
  };
}
const put = (outcome: OpRecord["outcome"], shard?: string): OpRecord =>
  op("put", { outcome, ...(shard !== undefined && outcome === "ack" ? { shard } : {}) });
const del = (outcome: OpRecord["outcome"], shard: string): OpRecord => op("delete", { outcome, shard });

/** What a replica serves: the bytes of a PUT, 404, or a status. */
function read(shard: string, server: string, what: OpRecord | number, key = "k"): ReplicaRead {
  if (typeof what === "number") return { shard, key, server, status: what };
  return { shard, key, server, status: 200, digest: what.digest!, tag: what.id };
}

/** Both replicas of both shards: shard 1 on servers 1, 2; shard 2 on servers 3, 4. */
function reads(s1: [OpRecord | 404, OpRecord | 404], s2: [OpRecord | 404, OpRecord | 404] = [404, 404]) {
  return [read("1", "1", s1[0]), read("1", "2", s1[1]), read("2", "3", s2[0]), read("2", "4", s2[1])];
}

void test("an acknowledged delete served again is caught, with the address, replica and history", () => {
  const v1 = put("ack", "2");
  const gone = del("ack", "2");
  const verdict = checkFinalState([v1, gone], reads([404, 404], [404, v1]));
  assert.equal(verdict.violations.length, 1);
  const [v] = verdict.violations;
  assert.equal(v?.kind, "resurrected");
  assert.equal(v?.shard, "2");
  assert.equal(v?.server, "4");
  assert.match(v?.expected ?? "", new RegExp(`404 \\(deleted by #${gone.id}\\)`));
  const withVersion = {
    ...verdict,
    violations: verdict.violations.map((x) => ({ ...x, version: "0000000002500000-00a3" })),
  };
  const report = formatVerdict(withVersion, {
    events: [{ atMs: v1.startMs + 1, what: "SIGKILL node 3" }],
    startEpochMs: 1000,
  });
  assert.match(report, /RESURRECTED: 2:k on server 4 served the bytes of #\d+/);
  assert.match(report, new RegExp(`#${gone.id} .*via coordinator \\d: DELETE 2:k -> 204`));
  assert.match(report, /SIGKILL node 3/, "the cluster events around the ops are shown");
  assert.match(report, /X-Backpack-Version 0000000002500000-00a3, stamped at 1\.500s/);
});

void test("a reverted overwrite is caught on the replica that went back", () => {
  const v1 = put("ack", "1");
  const v2 = put("ack", "1");
  const verdict = checkFinalState([v1, v2], reads([v2, v1]));
  assert.deepEqual(
    verdict.violations.map((v) => [v.kind, v.server]),
    [["reverted", "2"]],
  );
  // Both replicas back at v1: two violations.
  assert.equal(checkFinalState([v1, v2], reads([v1, v1])).violations.length, 2);
  // An unknown-outcome PUT before the last acknowledged one is older: never allowed.
  const v0 = put("unknown");
  const v3 = put("ack", "1");
  const late = checkFinalState([v0, v3], reads([v3, v0], [404, 404]));
  assert.deepEqual(
    late.violations.map((v) => v.kind),
    ["reverted"],
  );
});

void test("unknown-outcome ops after the last acknowledged one are tolerated, on any shard for a PUT", () => {
  const v1 = put("ack", "1");
  const v2 = put("unknown");
  const ok = checkFinalState([v1, v2], reads([v1, v2], [v2, 404]));
  assert.deepEqual(ok.violations, []);
  assert.equal(ok.tolerated, 2);
  assert.equal(ok.divergent, 2, "replicas that disagree within what is allowed are counted");
  // An unknown DELETE may have happened.
  const d = del("unknown", "1");
  assert.deepEqual(checkFinalState([v1, d], reads([404, v1])).violations, []);
  // A timeout (no answer) and a 503 are unknown; a refused connection and a 4xx are refusals.
  assert.equal(classify(0, "UND_ERR_HEADERS_TIMEOUT"), "unknown");
  assert.equal(classify(0, "UND_ERR_SOCKET"), "unknown");
  assert.equal(classify(503), "unknown");
  assert.equal(classify(0, "ECONNREFUSED"), "refused");
  assert.equal(classify(404), "refused");
  assert.equal(classify(204), "ack");
});

void test("a PUT acknowledged on another shard leaves the old address alone; its bytes elsewhere are misplaced", () => {
  const v1 = put("ack", "1");
  const v2 = put("ack", "2");
  assert.deepEqual(checkFinalState([v1, v2], reads([v1, v1], [v2, v2])).violations, []);
  const wrong = checkFinalState([v1, v2], reads([v1, v2], [v2, v2]));
  assert.deepEqual(
    wrong.violations.map((v) => [v.kind, v.server]),
    [["misplaced", "2"]],
  );
  // A refused PUT must have no effect anywhere.
  const refused = put("refused");
  const stored = checkFinalState([v1, refused], reads([v1, refused]));
  assert.deepEqual(
    stored.violations.map((v) => v.kind),
    ["misplaced"],
  );
});

void test("lost writes, unknown bytes and unreadable replicas are caught", () => {
  const v1 = put("ack", "1");
  const lost = checkFinalState([v1], reads([v1, 404]));
  assert.deepEqual(
    lost.violations.map((v) => [v.kind, v.server]),
    [["lost", "2"]],
  );
  const strange: ReplicaRead = { shard: "1", key: "k", server: "2", status: 200, digest: "zz", tag: 99 };
  const odd = checkFinalState([v1], [read("1", "1", v1), strange, read("2", "3", 502), read("2", "4", 404)]);
  assert.deepEqual(
    odd.violations.map((v) => [v.kind, v.server]),
    [
      ["unknown-bytes", "2"],
      ["unreadable", "3"],
    ],
  );
  // A key without ops must be absent everywhere.
  const none = checkFinalState([], [read("1", "1", 404, "other"), read("1", "2", v1, "other")]);
  assert.deepEqual(
    none.violations.map((v) => v.kind),
    ["unknown-bytes"],
  );
});

void test("a DELETE answered 404 while the acknowledged file should be there is caught", () => {
  const v1 = put("ack", "1");
  const missing = op("delete", { outcome: "refused", shard: "1", status: 404 });
  const verdict = checkFinalState([v1, missing], reads([v1, v1]));
  assert.deepEqual(
    verdict.violations.map((v) => v.kind),
    ["delete-404"],
  );
  assert.match(formatVerdict(verdict), /DELETE-404: 1:k served 404 to DELETE #\d+/);
  // After a DELETE with an unknown outcome, a 404 is what it may have left.
  const maybe = del("unknown", "1");
  const after = op("delete", { outcome: "refused", shard: "1", status: 404 });
  assert.deepEqual(checkFinalState([v1, maybe, after], reads([404, 404])).violations, []);
});

void test("bodies name their op; the workload keeps one op per key at a time, in disjoint key sets", async () => {
  const body = bodyFor(1234, "af/c1/k2", 500);
  assert.equal(body.length, 500);
  assert.equal(tagOf(body), 1234);
  assert.notEqual(digestOf(body), digestOf(bodyFor(1234, "af/c1/k2", 500)), "bytes differ per upload");

  const inFlight = new Set<string>();
  let overlap = 0;
  let calls = 0;
  const answer = async (key: string, make: () => Answer): Promise<Answer> => {
    if (inFlight.has(key)) overlap++;
    inFlight.add(key);
    await new Promise((resolve) => setImmediate(resolve));
    inFlight.delete(key);
    return make();
  };
  const w = new Workload(
    {
      coordinatorCount: 2,
      put: (c, key) =>
        answer(key, () =>
          // Coordinator 2 is down every 7th call: the PUT is tried again through coordinator 1.
          c === 2 && ++calls % 7 === 0
            ? { status: 0, text: "", error: "ECONNREFUSED" }
            : { status: 200, text: JSON.stringify({ shard_id: String(1 + (key.length % 2)) }) },
        ),
      del: (_c, _shard, key) => answer(key, () => ({ status: 204, text: "" })),
    },
    {
      seed: 7,
      clients: 3,
      keysPerClient: 4,
      lanesPerClient: 3,
      keyPrefix: "t/",
      maxOps: 400,
      maxGapMs: 0,
      clock: () => 0,
    },
  );
  w.start();
  await w.finished();
  assert.equal(overlap, 0, "never two ops on one key at once");
  assert.ok(w.ops.length >= 400 && w.ops.length < 420, `ops: ${w.ops.length}`);
  for (const o of w.ops) assert.match(o.key, new RegExp(`^t/c${o.client - 1}/k\\d$`), "a client's own keys");
  const kinds = new Set(w.ops.map((o) => `${o.kind} ${o.outcome}`));
  assert.deepEqual([...kinds].sort(), ["delete ack", "put ack", "put refused"]);
  const retried = w.ops.filter((o) => o.outcome === "refused");
  for (const r of retried) {
    const next = w.ops.find((o) => o.key === r.key && o.id > r.id);
    assert.equal(
      next?.coordinator,
      1,
      "a refused connection is tried once more through the other coordinator",
    );
  }
  // Every delete targets an address acknowledged before (and not deleted since).
  for (const d of w.ops.filter((o) => o.kind === "delete")) {
    const before = w.ops.filter((o) => o.key === d.key && o.id < d.id && o.shard === d.shard);
    assert.equal(before.at(-1)?.kind, "put", `delete #${d.id} of ${d.shard}:${d.key}`);
  }
});
