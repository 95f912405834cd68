import { test } from "node:test";
import assert from "node:assert/strict";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import {
  BATCH_HEAD_BYTES,
  BATCH_PATH,
  decodeBatch,
  encodeBatch,
  type BatchRecord,
} from "../../src/common/batch-frame.js";
import { checksum } from "../../src/common/checksum.js";
import { hasCode } from "../../src/common/errors.js";
import { formatVersion } from "../../src/common/version.js";
import { createAgent } from "../../src/client/http-agent.js";
import { NodeClient } from "../../src/client/node-client.js";
import { LeanClient } from "../../src/client/lean-client.js";
import { startProcess } from "../helpers/process.js";
import { tempDir } from "../helpers/tmp.js";
import { freePort } from "../helpers/wait.js";
import { http, raw, startNode } from "./node-harness.js";

function record(key: string, body: Buffer | string, extra: Partial<BatchRecord> = {}): BatchRecord {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return { key, contentType: undefined, body: b, bodyCrc: checksum(b), version: undefined, ...extra };
}

function post(base: string, frame: Buffer) {
  return http(base, BATCH_PATH, {
    method: "POST",
    body: frame,
    headers: { "content-type": "application/vnd.backpack.batch" },
  });
}

function flip(buf: Buffer, at: number, mask: number): void {
  buf.writeUInt8(buf.readUInt8(at) ^ mask, at);
}

type Result = { status: number; code?: string; crc?: string; version?: string; current?: string };

/** A deterministic generator (the fuzz test prints its seed; BACKPACK_FUZZ_SEED replays one). */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

void test("the frame: records round-trip, and a damaged frame is refused naming what is wrong", () => {
  const records = [
    record("a/b.txt", "hello", {
      contentType: "text/plain",
      headers: { "x-backpack-meta-a": "1", expires: "0" },
    }),
    record("empty", ""),
    record("café/ü", Buffer.alloc(70_000, 9), { version: { stamp: 1764823935123456, origin: 0xa3 } }),
  ];
  const frame = encodeBatch(records);
  const back = decodeBatch(frame, { maxBodyBytes: 1 << 20 });
  assert.deepEqual(
    back.map((r) => [r.key, r.contentType, r.body.toString("hex"), r.bodyCrc, r.version, r.headers]),
    records.map((r) => [r.key, r.contentType, r.body.toString("hex"), r.bodyCrc, r.version, r.headers]),
  );
  const refused = (f: Buffer, what: RegExp): void => {
    assert.throws(
      () => decodeBatch(f, { maxBodyBytes: 1 << 20 }),
      (err: unknown) => hasCode(err, "BAD_FRAME") && what.test((err as Error).message),
    );
  };
  refused(frame.subarray(0, frame.length - 1), /cut short/);
  refused(Buffer.concat([frame, Buffer.from([0])]), /follow the last record/);
  refused(Buffer.from("nope"), /magic/);
  const huge = Buffer.from(frame);
  huge.writeUInt32LE(0xffffffff, 4);
  refused(huge, /at most 1024/);
  const more = Buffer.from(frame);
  more.writeUInt32LE(4, 4);
  refused(more, /cut short|holds/);
  const flipped = Buffer.from(frame);
  flip(flipped, BATCH_HEAD_BYTES + 9, 1); // record 0's body length
  refused(flipped, /checksum/);
});

void test("a batch stores its records as their PUTs would, each answered on its own; a failure stays in its record", async (t) => {
  const node = await startNode(t);
  const held = await http(node.url, "/kept.txt", {
    method: "PUT",
    body: "v2",
    headers: { "x-backpack-version": "2000000000000000-0001" },
  });
  assert.equal(held.status, 201);
  const bad = record("bad-crc.bin", "body");
  bad.bodyCrc ^= 1;
  const frame = encodeBatch([
    record("one.txt", "first", {
      contentType: "text/plain",
      version: { stamp: 1_700_000_000_000_000, origin: 7 },
    }),
    bad,
    record("a/../b", "dots"),
    record("stats", "reserved"),
    record("kept.txt", "v1", { version: { stamp: 1_000_000_000_000_000, origin: 1 } }),
    record("big.bin", Buffer.alloc(64 * 1024, 3)),
  ]);
  const res = await post(node.url, frame);
  assert.equal(res.status, 200, res.text);
  const results = (res.json() as { results: Result[] }).results;
  assert.deepEqual(
    results.map((r) => [r.status, r.code]),
    [
      [201, undefined],
      [502, "CHECKSUM_MISMATCH"],
      [400, "INVALID_KEY"],
      [405, "METHOD_NOT_ALLOWED"],
      [409, "STALE_VERSION"],
      [201, undefined],
    ],
  );
  assert.equal(results[0]!.version, formatVersion({ stamp: 1_700_000_000_000_000, origin: 7 }));
  assert.equal(results[4]!.current, "2000000000000000-0001");
  const one = await http(node.url, "/one.txt");
  assert.deepEqual([one.status, one.text, one.headers["content-type"]], [200, "first", "text/plain"]);
  assert.equal((await http(node.url, "/big.bin")).body.length, 64 * 1024);
  assert.equal((await http(node.url, "/bad-crc.bin")).status, 404);
  assert.equal((await http(node.url, "/kept.txt")).text, "v2");
  // Only POST; a batch needs a length.
  assert.equal((await http(node.url, BATCH_PATH)).status, 405);
  const chunked = await raw(
    node.url,
    `POST ${BATCH_PATH} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
  );
  assert.equal(chunked.status, 411);
  const tooBig = await raw(
    node.url,
    `POST ${BATCH_PATH} HTTP/1.1\r\nhost: x\r\ncontent-length: ${64 << 20}\r\n\r\n`,
  );
  assert.equal(tooBig.status, 413);
});

void test("fuzzed frames (cut short, damaged, wrong counts and lengths) are refused whole or per record; nothing partial is stored and the node lives", async (t) => {
  const seed = Number(process.env.BACKPACK_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  t.diagnostic(`seed ${seed} (BACKPACK_FUZZ_SEED=${seed} replays it)`);
  const random = prng(seed);
  const int = (n: number): number => Math.floor(random() * n);
  const dir = await tempDir(t, "backpack-batch-fuzz-");
  const port = await freePort();
  const node = await startProcess(t, {
    command: "backpack",
    args: ["node", dir, "127.0.0.1", String(port)],
  });
  const base = `http://127.0.0.1:${port}`;
  const counts = { refused: 0, stored: 0, failed: 0, cut: 0 };
  for (let round = 0; round < 250; round++) {
    const records = Array.from({ length: 1 + int(6) }, (_, i) =>
      record(`fuzz/${round}/${i}`, Buffer.alloc(int(3000), round + i)),
    );
    const frame = encodeBatch(records);
    const mutated = Buffer.from(frame);
    let sent = mutated;
    switch (int(6)) {
      case 0: // cut short
        sent = mutated.subarray(0, int(mutated.length));
        break;
      case 1: // any byte flipped
        flip(mutated, int(mutated.length), 1 + int(255));
        break;
      case 2: // a count too large, or off by one
        mutated.writeUInt32LE([records.length + 1, records.length - 1, 0xffffffff, 1025][int(4)]!, 4);
        break;
      case 3: // a record's body length changed (its header CRC then fails)
        mutated.writeUInt32LE(int(2) ? 0xffffffff : int(5000), BATCH_HEAD_BYTES + 8);
        break;
      case 4: // bytes after the last record
        sent = Buffer.concat([mutated, Buffer.alloc(1 + int(40), int(256))]);
        break;
      default: // a byte of a body flipped: that record fails alone
        flip(mutated, mutated.length - 1 - int(Math.max(1, records.at(-1)!.body.length)), 0x40);
    }
    let res: Awaited<ReturnType<typeof post>> | undefined;
    if (int(8) === 0) {
      // The client goes away mid-frame.
      counts.cut++;
      await raw(
        base,
        `POST ${BATCH_PATH} HTTP/1.1\r\nhost: x\r\ncontent-length: ${sent.length}\r\n\r\n`,
        (write, end) => {
          write(sent.subarray(0, int(sent.length)));
          end();
        },
      );
    } else {
      res = await post(base, sent);
      assert.ok(res.status === 200 || res.status === 400, `round ${round}: ${res.status} ${res.text}`);
    }
    const results = res?.status === 200 ? (res.json() as { results: Result[] }).results : [];
    if (res?.status === 400) {
      assert.equal(res.json().code, "BAD_FRAME", res.text);
      counts.refused++;
    }
    for (const [i, r] of records.entries()) {
      const got = await http(base, `/${r.key}`);
      if (results[i]?.status === 201) {
        counts.stored++;
        assert.equal(got.status, 200, `round ${round} record ${i}`);
        assert.ok(got.body.equals(r.body), `round ${round} record ${i} is stored whole`);
      } else {
        if (results[i]) counts.failed++;
        assert.equal(
          got.status,
          404,
          `round ${round} record ${i}: nothing stored (${JSON.stringify(results[i])})`,
        );
      }
    }
  }
  t.diagnostic(JSON.stringify(counts));
  assert.ok(node.running, "the node is still running");
  assert.equal((await http(base, "/healthz")).status, 200);
  assert.ok(counts.refused > 0 && counts.stored > 0 && counts.failed > 0, JSON.stringify(counts));
});

void test("small writes to one node made in one turn go out as one batch and are made durable by one group commit", async (t) => {
  const node = await startNode(t);
  const agent = createAgent();
  const reader = new LeanClient();
  t.after(async () => {
    reader.close();
    await agent.close();
  });
  const client = new NodeClient(agent, { batch: true }, reader);
  const groups: number[] = [];
  const onCommit = (msg: unknown): void => void groups.push((msg as { records: number }).records);
  subscribe("backpack:storage:commit", onCommit);
  t.after(() => unsubscribe("backpack:storage:commit", onCommit));
  const stored = await Promise.all(
    Array.from({ length: 40 }, (_, i) => client.put(node.url, `turn/${i}`, Buffer.from(`body ${i}`))),
  );
  assert.deepEqual(groups, [40], "one group commit for the 40 writes");
  for (const [i, s] of stored.entries()) assert.equal(s.crc, checksum(Buffer.from(`body ${i}`)));
  assert.equal((await http(node.url, "/turn/39")).text, "body 39");
  // A record refused by the node fails its own put only.
  const [ok, stale] = await Promise.allSettled([
    client.put(node.url, "turn/new", Buffer.from("x")),
    client.put(node.url, "turn/0", Buffer.from("old"), { version: { stamp: 1, origin: 0 } }),
  ]);
  assert.equal(ok.status, "fulfilled");
  assert.ok(stale.status === "rejected" && hasCode(stale.reason, "STALE_VERSION"));
});
