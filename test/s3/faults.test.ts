import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";
import { addKey, newAccessKey } from "../../src/s3/access-keys.js";
import { openClusterMap } from "../../src/cluster/open.js";
import { ProcCluster } from "../coordinator/proc-cluster.js";
import { startRedis } from "../helpers/redis.js";
import { freePort } from "../helpers/wait.js";
import { startZooKeeper } from "../helpers/zookeeper.js";
import { bytes, s3Client } from "./fixture.js";

const PART = 5 * 1024 ** 2;

/**
 * The distributed cluster: ZooKeeper, Redis, 2 shards × 2 storage nodes, 2 coordinators serving S3 and a
 * replicator, every one its own process.
 */
async function distributed(t: Parameters<typeof ProcCluster.create>[0]) {
  const zk = await startZooKeeper(t);
  const redis = await startRedis(t);
  const c = await ProcCluster.create(t, zk.connectString, "/s3");
  await Promise.all(["1", "2", "3", "4"].map((id) => c.startNode(id)));
  const map = openClusterMap({ zk: zk.connectString, root: "/s3" });
  await map.start();
  t.after(() => map.stop());
  await map.init({ key: "s3-queue", servers: [redis.endpoint] });
  for (const id of ["1", "2", "3", "4"]) await map.addServer(id, c.nodeUrls.get(id) as string);
  for (const [shard, servers] of [
    ["1", ["1", "2"]],
    ["2", ["3", "4"]],
  ] as const) {
    await map.addShard(shard, [...servers], 1024 ** 3);
    await map.setShardEnabled(shard, true);
  }
  const key = await map.updateS3(addKey(newAccessKey("test", { "*": "owner" }, Date.now())));
  const endpoints: string[] = [];
  for (let i = 0; i < 2; i++) {
    const port = await freePort();
    await c.startCoordinator(["--s3-listen", `127.0.0.1:${port}`]);
    endpoints.push(`http://127.0.0.1:${port}`);
  }
  await c.startReplicator();
  return { c, key: { id: key.id, secret: key.secret }, endpoints };
}

function md5(b: Buffer): string {
  return createHash("md5").update(b).digest("hex");
}

test("multipart upload survives a SIGKILLed storage node and a SIGKILLed coordinator", async (t) => {
  const { c, key, endpoints } = await distributed(t);
  const viaA = s3Client(endpoints[0] as string, key);
  const viaB = s3Client(endpoints[1] as string, key);
  t.after(() => {
    viaA.destroy();
    viaB.destroy();
  });
  await viaA.send(new CreateBucketCommand({ Bucket: "faults" }));
  const up = await viaA.send(new CreateMultipartUploadCommand({ Bucket: "faults", Key: "object.bin" }));
  const id = up.UploadId as string;
  const data = [bytes(PART), bytes(PART), bytes(PART), bytes(1234)];
  const parts: { PartNumber: number; ETag: string }[] = [];
  const send = async (client: typeof viaA, n: number) => {
    const r = await client.send(
      new UploadPartCommand({
        Bucket: "faults",
        Key: "object.bin",
        UploadId: id,
        PartNumber: n,
        Body: data[n - 1],
      }),
    );
    parts.push({ PartNumber: n, ETag: r.ETag as string });
  };
  await send(viaA, 1);

  // A storage node dies mid-upload: its shard's other node takes the writes (the copy is queued for it).
  const node = c.nodes.get("3");
  assert.equal(await node?.kill("SIGKILL"), null, "node 3 was killed by the signal");
  assert.equal(node?.running, false);
  await send(viaA, 2);
  await send(viaA, 3);

  // The coordinator that took the upload dies between UploadPart and Complete: another one finishes it.
  const coordinatorA = c.coordinators[0];
  assert.equal(await coordinatorA?.kill("SIGKILL"), null, "coordinator A was killed by the signal");
  assert.equal(coordinatorA?.running, false);
  await send(viaB, 4);
  const done = await viaB.send(
    new CompleteMultipartUploadCommand({
      Bucket: "faults",
      Key: "object.bin",
      UploadId: id,
      MultipartUpload: { Parts: parts },
    }),
  );
  assert.match(done.ETag ?? "", /-4"$/);
  const got = await viaB.send(new GetObjectCommand({ Bucket: "faults", Key: "object.bin" }));
  const back = Buffer.from(
    await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
  );
  assert.equal(md5(back), md5(Buffer.concat(data)));
});
