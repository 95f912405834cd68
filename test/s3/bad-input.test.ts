import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { runBin } from "../helpers/process.js";
import { waitFor } from "../helpers/wait.js";
import { bytes, s3Client, s3Failure, startS3Cluster } from "./fixture.js";

/** The `<Code>` of an S3 XML error answer. */
async function xmlCode(res: Response): Promise<string | undefined> {
  return /<Code>([^<]*)<\/Code>/.exec(await res.text())?.[1];
}

test("bad input gets S3's error and stores or changes nothing", async (t) => {
  const f = await startS3Cluster(t);
  const s3 = f.client();
  t.after(() => s3.destroy());
  await s3.send(new CreateBucketCommand({ Bucket: "safe" }));
  await s3.send(new PutObjectCommand({ Bucket: "safe", Key: "keep.txt", Body: "original" }));
  const keep = async (): Promise<string | undefined> =>
    (await s3.send(new GetObjectCommand({ Bucket: "safe", Key: "keep.txt" }))).Body?.transformToString();
  const listed = async (): Promise<string[]> =>
    ((await s3.send(new ListObjectsV2Command({ Bucket: "safe" }))).Contents ?? []).map(
      (c) => c.Key as string,
    );

  await t.test("a wrong secret: SignatureDoesNotMatch; an unknown key: InvalidAccessKeyId", async () => {
    const wrong = f.client({ key: { id: f.key.id, secret: "not-the-secret" }, maxAttempts: 1 });
    t.after(() => wrong.destroy());
    const e = await s3Failure(
      wrong.send(new PutObjectCommand({ Bucket: "safe", Key: "keep.txt", Body: "overwritten" })),
    );
    assert.deepEqual(e, { code: "SignatureDoesNotMatch", status: 403 });
    const unknown = f.client({ key: { id: "BKNOSUCHKEY000000000", secret: "x" }, maxAttempts: 1 });
    t.after(() => unknown.destroy());
    assert.equal(
      (await s3Failure(unknown.send(new GetObjectCommand({ Bucket: "safe", Key: "keep.txt" })))).code,
      "InvalidAccessKeyId",
    );
    const anonymous = await fetch(`${f.endpoint}/safe/keep.txt`);
    assert.equal(anonymous.status, 403);
    assert.equal(await xmlCode(anonymous), "AccessDenied");
    assert.equal(await keep(), "original");
  });

  await t.test("an expired presigned URL: AccessDenied", async () => {
    const url = await getSignedUrl(s3, new PutObjectCommand({ Bucket: "safe", Key: "late.txt" }), {
      expiresIn: 60,
      signingDate: new Date(Date.now() - 120_000),
    });
    const res = await fetch(url, { method: "PUT", body: "too late" });
    assert.equal(res.status, 403);
    assert.equal(await xmlCode(res), "AccessDenied");
    assert.deepEqual(await listed(), ["keep.txt"]);
  });

  await t.test("a clock 20 minutes off: RequestTimeTooSkewed", async () => {
    const skewed = f.client({ systemClockOffset: -20 * 60_000, maxAttempts: 1 });
    t.after(() => skewed.destroy());
    const e = await s3Failure(
      skewed.send(new PutObjectCommand({ Bucket: "safe", Key: "skewed.txt", Body: "x" })),
    );
    assert.deepEqual(e, { code: "RequestTimeTooSkewed", status: 403 });
    assert.deepEqual(await listed(), ["keep.txt"]);
  });

  await t.test("a body that does not match its CRC32 or Content-MD5: BadDigest, nothing stored", async () => {
    const crc = await s3Failure(
      s3.send(
        new PutObjectCommand({
          Bucket: "safe",
          Key: "keep.txt",
          Body: "tampered",
          ChecksumCRC32: "AAAAAA==",
        }),
      ),
    );
    assert.deepEqual(crc, { code: "BadDigest", status: 400 });
    const md5 = await s3Failure(
      s3.send(
        new PutObjectCommand({
          Bucket: "safe",
          Key: "new.txt",
          Body: "tampered",
          ContentMD5: "1B2M2Y8AsgTpgAmY7PhCfg==",
        }),
      ),
    );
    assert.deepEqual(md5, { code: "BadDigest", status: 400 });
    assert.equal(await keep(), "original");
    assert.deepEqual(await listed(), ["keep.txt"]);
  });

  await t.test(
    "a part list out of order or with a wrong ETag: InvalidPartOrder / InvalidPart; then it completes",
    async () => {
      const up = await s3.send(new CreateMultipartUploadCommand({ Bucket: "safe", Key: "parts.bin" }));
      const id = up.UploadId as string;
      const a = bytes(5 * 1024 ** 2);
      const b = bytes(1000);
      const p1 = await s3.send(
        new UploadPartCommand({ Bucket: "safe", Key: "parts.bin", UploadId: id, PartNumber: 1, Body: a }),
      );
      const p2 = await s3.send(
        new UploadPartCommand({ Bucket: "safe", Key: "parts.bin", UploadId: id, PartNumber: 2, Body: b }),
      );
      const complete = (Parts: { PartNumber: number; ETag: string | undefined }[]) =>
        s3.send(
          new CompleteMultipartUploadCommand({
            Bucket: "safe",
            Key: "parts.bin",
            UploadId: id,
            MultipartUpload: { Parts },
          }),
        );
      const order = await s3Failure(
        complete([
          { PartNumber: 2, ETag: p2.ETag },
          { PartNumber: 1, ETag: p1.ETag },
        ]),
      );
      assert.equal(order.code, "InvalidPartOrder");
      const etag = await s3Failure(
        complete([
          { PartNumber: 1, ETag: p1.ETag },
          { PartNumber: 2, ETag: '"0123456789abcdef0123456789abcdef"' },
        ]),
      );
      assert.equal(etag.code, "InvalidPart");
      const missing = await s3Failure(
        complete([
          { PartNumber: 1, ETag: p1.ETag },
          { PartNumber: 3, ETag: p2.ETag },
        ]),
      );
      assert.equal(missing.code, "InvalidPart");
      assert.deepEqual(await listed(), ["keep.txt"]);
      await complete([
        { PartNumber: 1, ETag: p1.ETag },
        { PartNumber: 2, ETag: p2.ETag },
      ]);
      const got = await s3.send(new GetObjectCommand({ Bucket: "safe", Key: "parts.bin" }));
      assert.ok(
        Buffer.from(
          await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
        ).equals(Buffer.concat([a, b])),
      );
    },
  );

  await t.test(
    "keys from the admin command: read-only may read, not write; a revoked key is refused",
    async () => {
      const map = `file:${join(f.data, "cluster.json")}`;
      const made = await runBin("backpack", [
        "admin",
        "s3-key",
        "create",
        map,
        "/",
        "--name",
        "reader",
        "--grant",
        "safe:read",
      ]);
      assert.equal(made.code, 0, made.stderr);
      const id = /Access key id:\s+(\S+)/.exec(made.stdout)?.[1] as string;
      const secret = /Secret access key:\s+(\S+)/.exec(made.stdout)?.[1] as string;
      const listedKeys = await runBin("backpack", ["admin", "s3-key", "list", map, "/"]);
      assert.match(listedKeys.stdout, new RegExp(`${id}  reader  .*safe:read`));
      assert.ok(!listedKeys.stdout.includes(secret), "list never shows a secret");
      const reader = s3Client(f.endpoint, { id, secret }, { maxAttempts: 1 });
      t.after(() => reader.destroy());
      // The running cluster reads the map file again on its change.
      await waitFor(
        async () =>
          await reader.send(new GetObjectCommand({ Bucket: "safe", Key: "keep.txt" })).then(
            () => true,
            () => false,
          ),
        {
          what: "the new key to be known",
        },
      );
      const denied = await s3Failure(
        reader.send(new PutObjectCommand({ Bucket: "safe", Key: "keep.txt", Body: "no" })),
      );
      assert.deepEqual(denied, { code: "AccessDenied", status: 403 });
      assert.equal(
        (await s3Failure(reader.send(new CreateBucketCommand({ Bucket: "mine" })))).code,
        "AccessDenied",
      );
      assert.equal(await keep(), "original");
      const revoked = await runBin("backpack", ["admin", "s3-key", "revoke", map, "/", id]);
      assert.equal(revoked.code, 0, revoked.stderr);
      await waitFor(
        async () =>
          (await s3Failure(reader.send(new GetObjectCommand({ Bucket: "safe", Key: "keep.txt" })))).code ===
          "InvalidAccessKeyId",
        { what: "the revoked key to be refused" },
      );
      const usage = await runBin("backpack", [
        "admin",
        "s3-key",
        "create",
        map,
        "/",
        "--grant",
        "safe:admin",
      ]);
      assert.equal(usage.code, 2);
    },
  );

  await t.test("an operation not implemented: 501 NotImplemented", async () => {
    const e = await s3Failure(s3.send(new GetBucketVersioningCommand({ Bucket: "safe" })));
    assert.deepEqual(e, { code: "NotImplemented", status: 501 });
  });
});
