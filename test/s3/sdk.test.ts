import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { test } from "node:test";
import { bytes, s3Failure, startS3Cluster, type S3Fixture } from "./fixture.js";

function md5(b: Buffer): string {
  return createHash("md5").update(b).digest("hex");
}

async function body(
  s3: S3Client,
  bucket: string,
  key: string,
  extra: Record<string, unknown> = {},
): Promise<Buffer> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...extra }));
  return Buffer.from(
    await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
  );
}

/** Lists every key of a bucket through ListObjectsV2 pages of `pageSize`. */
async function listAll(s3: S3Client, bucket: string, pageSize: number, prefix?: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({
        Bucket: bucket,
        MaxKeys: pageSize,
        ContinuationToken: token,
        Prefix: prefix,
      }),
    );
    keys.push(...(page.Contents ?? []).map((c) => c.Key as string));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return keys;
}

test("S3 through the AWS SDK (defaults: CRC32 checksums) against the embedded cluster", async (t) => {
  const f: S3Fixture = await startS3Cluster(t);
  const s3 = f.client();
  t.after(() => s3.destroy());

  await t.test("buckets: create, head, list, location, and delete only when empty", async () => {
    await s3.send(new CreateBucketCommand({ Bucket: "photos" }));
    assert.equal(
      (await s3Failure(s3.send(new CreateBucketCommand({ Bucket: "photos" })))).code,
      "BucketAlreadyOwnedByYou",
    );
    await s3.send(new HeadBucketCommand({ Bucket: "photos" }));
    const listed = await s3.send(new ListBucketsCommand({}));
    assert.deepEqual(
      listed.Buckets?.map((b) => b.Name),
      ["photos"],
    );
    const loc = await s3.send(new GetBucketLocationCommand({ Bucket: "photos" }));
    assert.ok(!loc.LocationConstraint, "us-east-1 is answered as an empty constraint");
    assert.equal((await s3Failure(s3.send(new HeadBucketCommand({ Bucket: "nothere" })))).status, 404);
    assert.equal(
      (await s3Failure(s3.send(new CreateBucketCommand({ Bucket: "Bad_Name" })))).code,
      "InvalidBucketName",
    );
    await s3.send(new CreateBucketCommand({ Bucket: "scratch" }));
    await s3.send(new PutObjectCommand({ Bucket: "scratch", Key: "x", Body: "x" }));
    assert.equal(
      (await s3Failure(s3.send(new DeleteBucketCommand({ Bucket: "scratch" })))).code,
      "BucketNotEmpty",
    );
    await s3.send(new DeleteObjectCommand({ Bucket: "scratch", Key: "x" }));
    await s3.send(new DeleteBucketCommand({ Bucket: "scratch" }));
    assert.equal((await s3Failure(s3.send(new HeadBucketCommand({ Bucket: "scratch" })))).status, 404);
  });

  await t.test(
    "objects: put, get, head, metadata, ETag = MD5, delete; the same file through the native API",
    async () => {
      const data = bytes(100_000);
      const put = await s3.send(
        new PutObjectCommand({
          Bucket: "photos",
          Key: "trip/café 1.jpg",
          Body: data,
          ContentType: "image/jpeg",
          CacheControl: "max-age=60",
          ContentDisposition: 'attachment; filename="a.jpg"',
          Metadata: { camera: "x100", place: "alps" },
        }),
      );
      assert.equal(put.ETag, `"${md5(data)}"`);
      const got = await s3.send(new GetObjectCommand({ Bucket: "photos", Key: "trip/café 1.jpg" }));
      const back = Buffer.from(
        await (got.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
      );
      assert.ok(back.equals(data));
      assert.equal(got.ContentType, "image/jpeg");
      assert.equal(got.CacheControl, "max-age=60");
      assert.equal(got.ContentDisposition, 'attachment; filename="a.jpg"');
      assert.deepEqual(got.Metadata, { camera: "x100", place: "alps" });
      assert.equal(got.ETag, `"${md5(data)}"`);
      const head = await s3.send(new HeadObjectCommand({ Bucket: "photos", Key: "trip/café 1.jpg" }));
      assert.equal(head.ContentLength, data.length);
      assert.equal(head.ETag, `"${md5(data)}"`);

      // The native API reaches the same file, by the shard the listing names.
      const listing = (await (
        await fetch(`${f.info.coordinators[0]}/_list?prefix=${encodeURIComponent("photos/trip/café 1.jpg")}`)
      ).json()) as { entries: { key: string; shard: string }[] };
      const shard = listing.entries[0]?.shard as string;
      const native = await fetch(`${f.info.coordinators[1]}/${shard}:photos/trip/caf%C3%A9%201.jpg`);
      assert.equal(native.status, 200);
      assert.ok(Buffer.from(await native.arrayBuffer()).equals(data));

      await s3.send(new DeleteObjectCommand({ Bucket: "photos", Key: "trip/café 1.jpg" }));
      assert.equal(
        (await s3Failure(s3.send(new GetObjectCommand({ Bucket: "photos", Key: "trip/café 1.jpg" })))).code,
        "NoSuchKey",
      );
    },
  );

  await t.test("a streamed body goes aws-chunked with a CRC32 trailer", async () => {
    const data = bytes(300_000);
    await s3.send(
      new PutObjectCommand({
        Bucket: "photos",
        Key: "streamed.bin",
        Body: Readable.from([data.subarray(0, 1000), data.subarray(1000)]),
        ContentLength: data.length,
      }),
    );
    assert.ok((await body(s3, "photos", "streamed.bin")).equals(data));
  });

  await t.test("range, conditional requests and response-* overrides", async () => {
    const data = Buffer.from("0123456789abcdef");
    const put = await s3.send(new PutObjectCommand({ Bucket: "photos", Key: "r.txt", Body: data }));
    assert.equal((await body(s3, "photos", "r.txt", { Range: "bytes=2-5" })).toString(), "2345");
    assert.equal((await body(s3, "photos", "r.txt", { Range: "bytes=-3" })).toString(), "def");
    assert.equal(
      (await s3Failure(s3.send(new GetObjectCommand({ Bucket: "photos", Key: "r.txt", Range: "bytes=99-" }))))
        .code,
      "InvalidRange",
    );
    assert.equal(
      (
        await s3Failure(
          s3.send(new GetObjectCommand({ Bucket: "photos", Key: "r.txt", IfNoneMatch: put.ETag })),
        )
      ).status,
      304,
    );
    assert.equal(
      (await s3Failure(s3.send(new GetObjectCommand({ Bucket: "photos", Key: "r.txt", IfMatch: '"nope"' }))))
        .status,
      412,
    );
    assert.equal((await body(s3, "photos", "r.txt", { IfMatch: put.ETag })).toString(), data.toString());
    const over = await s3.send(
      new GetObjectCommand({
        Bucket: "photos",
        Key: "r.txt",
        ResponseContentType: "text/x-test",
        ResponseContentDisposition: "inline",
      }),
    );
    assert.equal(over.ContentType, "text/x-test");
    assert.equal(over.ContentDisposition, "inline");
    await over.Body?.transformToByteArray();
  });

  await t.test("copy and multi-delete", async () => {
    await s3.send(
      new PutObjectCommand({
        Bucket: "photos",
        Key: "src.txt",
        Body: "copy me",
        ContentType: "text/plain",
        Metadata: { a: "1" },
      }),
    );
    await s3.send(new CopyObjectCommand({ Bucket: "photos", Key: "dst.txt", CopySource: "photos/src.txt" }));
    const copy = await s3.send(new GetObjectCommand({ Bucket: "photos", Key: "dst.txt" }));
    assert.equal(await copy.Body?.transformToString(), "copy me");
    assert.equal(copy.ContentType, "text/plain");
    assert.deepEqual(copy.Metadata, { a: "1" });
    const del = await s3.send(
      new DeleteObjectsCommand({
        Bucket: "photos",
        Delete: { Objects: [{ Key: "src.txt" }, { Key: "dst.txt" }, { Key: "never" }] },
      }),
    );
    assert.equal(del.Deleted?.length, 3);
    assert.deepEqual(await listAll(s3, "photos", 1000, "s"), ["streamed.bin"]);
  });

  await t.test(
    "listing: 5,000 keys in pages, delimiters, v1 markers; a write or delete is in the next page",
    async () => {
      await s3.send(new CreateBucketCommand({ Bucket: "many" }));
      const keys = Array.from({ length: 5000 }, (_, i) => `d${i % 10}/k${String(i).padStart(5, "0")}`);
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          for (let i = next++; i < keys.length; i = next++) {
            await s3.send(new PutObjectCommand({ Bucket: "many", Key: keys[i], Body: String(i) }));
          }
        }),
      );
      const sorted = [...keys].sort();
      assert.deepEqual(await listAll(s3, "many", 1000), sorted);
      assert.deepEqual(
        await listAll(s3, "many", 333, "d3/"),
        sorted.filter((k) => k.startsWith("d3/")),
      );
      const top = await s3.send(new ListObjectsV2Command({ Bucket: "many", Delimiter: "/" }));
      assert.deepEqual(
        top.CommonPrefixes?.map((p) => p.Prefix),
        Array.from({ length: 10 }, (_, i) => `d${i}/`),
      );
      assert.equal(top.KeyCount, 10);
      const paged = await s3.send(new ListObjectsV2Command({ Bucket: "many", Delimiter: "/", MaxKeys: 4 }));
      assert.equal(paged.IsTruncated, true);
      const rest = await s3.send(
        new ListObjectsV2Command({
          Bucket: "many",
          Delimiter: "/",
          ContinuationToken: paged.NextContinuationToken,
        }),
      );
      assert.deepEqual(
        rest.CommonPrefixes?.map((p) => p.Prefix),
        ["d4/", "d5/", "d6/", "d7/", "d8/", "d9/"],
      );
      const after = await s3.send(
        new ListObjectsV2Command({ Bucket: "many", StartAfter: sorted[4990], MaxKeys: 1000 }),
      );
      assert.deepEqual(
        after.Contents?.map((c) => c.Key),
        sorted.slice(4991),
      );
      const v1 = await s3.send(new ListObjectsCommand({ Bucket: "many", Marker: sorted[10], MaxKeys: 5 }));
      assert.deepEqual(
        v1.Contents?.map((c) => c.Key),
        sorted.slice(11, 16),
      );
      assert.equal(v1.IsTruncated, true);

      await s3.send(new PutObjectCommand({ Bucket: "many", Key: "d0/aaa", Body: "new" }));
      await s3.send(new DeleteObjectCommand({ Bucket: "many", Key: sorted[0] }));
      const first = await s3.send(new ListObjectsV2Command({ Bucket: "many", Prefix: "d0/", MaxKeys: 2 }));
      assert.deepEqual(
        first.Contents?.map((c) => c.Key),
        ["d0/aaa", sorted[1]],
      );
    },
  );

  await t.test("multipart: 100 MiB in 5 MiB parts; listed while open; abort", async () => {
    const created = await s3.send(
      new CreateMultipartUploadCommand({
        Bucket: "photos",
        Key: "big.bin",
        ContentType: "application/x-big",
      }),
    );
    const uploadId = created.UploadId as string;
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: "photos" }));
    assert.deepEqual(
      uploads.Uploads?.map((u) => [u.Key, u.UploadId]),
      [["big.bin", uploadId]],
    );
    const whole = createHash("md5");
    const partMd5s: Buffer[] = [];
    const parts: { PartNumber: number; ETag: string }[] = [];
    const partSize = 5 * 1024 ** 2;
    for (let n = 1; n <= 20; n++) {
      const data = bytes(partSize);
      whole.update(data);
      partMd5s.push(createHash("md5").update(data).digest());
      const up = await s3.send(
        new UploadPartCommand({
          Bucket: "photos",
          Key: "big.bin",
          UploadId: uploadId,
          PartNumber: n,
          Body: data,
        }),
      );
      parts.push({ PartNumber: n, ETag: up.ETag as string });
    }
    const listedParts = await s3.send(
      new ListPartsCommand({ Bucket: "photos", Key: "big.bin", UploadId: uploadId, MaxParts: 15 }),
    );
    assert.equal(listedParts.Parts?.length, 15);
    assert.equal(listedParts.IsTruncated, true);
    const done = await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: "photos",
        Key: "big.bin",
        UploadId: uploadId,
        MultipartUpload: { Parts: parts },
      }),
    );
    const etag = `"${createHash("md5").update(Buffer.concat(partMd5s)).digest("hex")}-20"`;
    assert.equal(done.ETag, etag);
    const head = await s3.send(new HeadObjectCommand({ Bucket: "photos", Key: "big.bin" }));
    assert.equal(head.ContentLength, 20 * partSize);
    assert.equal(head.ETag, etag);
    assert.equal(head.ContentType, "application/x-big");
    const got = await s3.send(new GetObjectCommand({ Bucket: "photos", Key: "big.bin" }));
    const hash = createHash("md5");
    for await (const chunk of got.Body as AsyncIterable<Uint8Array>) hash.update(chunk);
    assert.equal(hash.digest("hex"), whole.digest("hex"));
    // A range across a part boundary.
    const cut = await body(s3, "photos", "big.bin", { Range: `bytes=${partSize - 3}-${partSize + 2}` });
    assert.equal(cut.length, 6);
    assert.equal((await s3.send(new ListMultipartUploadsCommand({ Bucket: "photos" }))).Uploads, undefined);

    const other = await s3.send(new CreateMultipartUploadCommand({ Bucket: "photos", Key: "gone.bin" }));
    await s3.send(
      new UploadPartCommand({
        Bucket: "photos",
        Key: "gone.bin",
        UploadId: other.UploadId,
        PartNumber: 1,
        Body: "x",
      }),
    );
    await s3.send(
      new AbortMultipartUploadCommand({ Bucket: "photos", Key: "gone.bin", UploadId: other.UploadId }),
    );
    assert.equal(
      (
        await s3Failure(
          s3.send(new ListPartsCommand({ Bucket: "photos", Key: "gone.bin", UploadId: other.UploadId })),
        )
      ).code,
      "NoSuchUpload",
    );
  });

  await t.test("presigned GET and PUT", async () => {
    const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: "photos", Key: "signed.txt" }), {
      expiresIn: 300,
    });
    const put = await fetch(putUrl, { method: "PUT", body: "by url" });
    assert.equal(put.status, 200);
    const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket: "photos", Key: "signed.txt" }), {
      expiresIn: 300,
    });
    const got = await fetch(getUrl);
    assert.equal(got.status, 200);
    assert.equal(await got.text(), "by url");
  });

  await t.test("virtual-host style: <bucket>.localhost", async () => {
    const port = new URL(f.endpoint).port;
    const vhost = f.client({ endpoint: `http://localhost:${port}`, forcePathStyle: false });
    // Connect to loopback whatever <bucket>.localhost resolves to; Host (signed) stays the bucket's name.
    vhost.middlewareStack.add(
      (next) => async (args) => {
        const req = args.request as { hostname?: string };
        req.hostname = "127.0.0.1";
        return next(args);
      },
      { step: "finalizeRequest", name: "toLoopback", priority: "low" },
    );
    t.after(() => vhost.destroy());
    await vhost.send(new PutObjectCommand({ Bucket: "photos", Key: "vhost.txt", Body: "virtual" }));
    assert.equal((await body(s3, "photos", "vhost.txt")).toString(), "virtual");
    assert.equal((await body(vhost, "photos", "vhost.txt")).toString(), "virtual");
  });

  await t.test(
    "the sweep removes uploads never completed, and the parts of objects overwritten since",
    async () => {
      const parts = async (prefix: string): Promise<string[]> => {
        const res = await fetch(`${f.info.coordinators[0]}/_list?prefix=${encodeURIComponent(prefix)}`);
        return ((await res.json()) as { entries: { key: string }[] }).entries.map((e) => e.key);
      };
      const left = await s3.send(new CreateMultipartUploadCommand({ Bucket: "photos", Key: "left.bin" }));
      await s3.send(
        new UploadPartCommand({
          Bucket: "photos",
          Key: "left.bin",
          UploadId: left.UploadId,
          PartNumber: 1,
          Body: "x",
        }),
      );
      const bigParts = await parts("_s3/parts/photos/");
      assert.ok(bigParts.length >= 21, `parts before: ${bigParts.length}`);
      // big.bin is overwritten by a single PUT: its 20 parts are garbage now.
      await s3.send(new PutObjectCommand({ Bucket: "photos", Key: "big.bin", Body: "small now" }));
      const removed = await f.cluster.sweepS3Uploads();
      assert.equal(removed, 2);
      assert.deepEqual(await parts("_s3/parts/photos/"), []);
      assert.deepEqual(await parts("_s3/uploads/photos/"), []);
      assert.equal((await body(s3, "photos", "big.bin")).toString(), "small now");
    },
  );
});
