import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { TestContext } from "node:test";
import { DevCluster, type DevClusterDescription } from "../../src/dev/cluster.js";
import { tempDir } from "../helpers/tmp.js";

export interface S3Fixture {
  cluster: DevCluster;
  info: DevClusterDescription;
  data: string;
  /** The first coordinator's S3 endpoint. */
  endpoint: string;
  key: { id: string; secret: string };
  client(
    extra?: Partial<S3ClientConfig> & { endpoint?: string; key?: { id: string; secret: string } },
  ): S3Client;
}

/** The embedded cluster (3 shards × 2 nodes, 2 coordinators, each with its S3 front) in this process. */
export async function startS3Cluster(t: Pick<TestContext, "after">): Promise<S3Fixture> {
  const data = join(await tempDir(t), "data");
  const cluster = new DevCluster({
    dataDir: data,
    host: "127.0.0.1",
    basePort: 0,
    shards: 3,
    replicas: 2,
    coordinators: 2,
    shardCapacityBytes: 100 * 1024 ** 3,
    sync: "none",
    ring: false,
    // Sweeps only when a test asks, and then every upload not completed counts as old.
    s3Settings: { sweepIntervalMs: 0, uploadMaxAgeMs: 0 },
  });
  await cluster.start();
  t.after(() => cluster.stop());
  const info = cluster.describe();
  const key = info.s3Key as { id: string; secret: string };
  const endpoint = info.s3[0] as string;
  return {
    cluster,
    info,
    data,
    endpoint,
    key,
    client: (extra = {}) => s3Client(extra.endpoint ?? endpoint, extra.key ?? key, extra),
  };
}

/** An SDK client with its defaults (checksums, retries), path style unless told otherwise. */
export function s3Client(
  endpoint: string,
  key: { id: string; secret: string },
  extra: Partial<S3ClientConfig> = {},
): S3Client {
  const { endpoint: _e, key: _k, ...rest } = extra as Partial<S3ClientConfig> & { key?: unknown };
  return new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: key.id, secretAccessKey: key.secret },
    ...rest,
  });
}

/** What an SDK call threw: its S3 error code and HTTP status. */
export async function s3Failure(p: Promise<unknown>): Promise<{ code: string; status: number | undefined }> {
  try {
    await p;
  } catch (err) {
    const e = err as { name?: string; Code?: string; $metadata?: { httpStatusCode?: number } };
    return { code: e.Code ?? e.name ?? "?", status: e.$metadata?.httpStatusCode };
  }
  throw new Error("the call succeeded; an S3 error was expected");
}

/** Random bytes (no two parts alike). */
export function bytes(size: number): Buffer {
  return randomBytes(size);
}
