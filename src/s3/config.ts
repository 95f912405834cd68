import { tmpdir } from "node:os";
import { BackpackError } from "../common/errors.js";

export interface S3FrontConfig {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Virtual-host style: `<bucket>.<domain>`; undefined serves path style only. */
  domain: string | undefined;
  /** The region answered by GetBucketLocation (requests may be signed for any). */
  region: string;
  /** The largest PutObject or part body, bytes (the coordinator's --max-body bounds it too). */
  maxBodyBytes: number;
  /** Bodies up to this size are verified in memory; larger ones are spooled to `tmpDir` first. */
  memoryBytes: number;
  tmpDir: string;
  /** Every part but the last of a multipart upload must be at least this large (S3: 5 MiB). */
  minPartBytes: number;
  /** Uploads never completed are removed after this age, ms. */
  uploadMaxAgeMs: number;
  /** How often the sweep of old uploads runs, ms (0: never). */
  sweepIntervalMs: number;
}

export const S3_DEFAULTS: Readonly<S3FrontConfig> = Object.freeze({
  host: "127.0.0.1",
  port: 0,
  domain: undefined,
  region: "us-east-1",
  maxBodyBytes: 5 * 1024 ** 3,
  memoryBytes: 8 * 1024 ** 2,
  tmpDir: tmpdir(),
  minPartBytes: 5 * 1024 ** 2,
  uploadMaxAgeMs: 7 * 24 * 3600 * 1000,
  sweepIntervalMs: 3600 * 1000,
});

export function s3Config(partial: Partial<S3FrontConfig>): Readonly<S3FrontConfig> {
  const defined = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const c: S3FrontConfig = { ...S3_DEFAULTS, ...defined };
  const problems: string[] = [];
  if (!Number.isInteger(c.port) || c.port < 0 || c.port > 65535) problems.push("port must be 0-65535");
  if (c.domain !== undefined && !/^[a-z0-9.-]+$/i.test(c.domain)) problems.push("domain must be a host name");
  if (!/^[a-z0-9-]+$/.test(c.region)) problems.push("region must be letters, digits and hyphens");
  if (!(c.memoryBytes > 0) || !(c.maxBodyBytes > 0)) problems.push("body sizes must be > 0");
  if (!(c.uploadMaxAgeMs >= 0) || !(c.sweepIntervalMs >= 0)) problems.push("upload ages must be >= 0");
  if (problems.length > 0) throw new BackpackError("INVALID_ARGUMENT", `S3 settings: ${problems.join("; ")}`);
  return Object.freeze(c);
}
