/**
 * Removes what multipart uploads leave behind: uploads never completed within the configured age (their
 * parts and file), and the parts of completed uploads whose object has since been deleted or overwritten
 * (its file no longer names the upload). Runs on every front; two sweeping at once make the same deletes.
 */
import { toBackpackError } from "../common/errors.js";
import type { S3Context } from "./context.js";
import { dropUpload } from "./multipart.js";
import { META, objectName, uploadsPrefix } from "./names.js";

/** Uploads looked at per bucket per sweep. */
const MAX_PER_SWEEP = 100_000;

export class UploadSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly ctx: S3Context) {}

  start(): void {
    const every = this.ctx.config.sweepIntervalMs;
    if (every <= 0) return;
    this.timer = setInterval(() => {
      this.running ??= this.sweep()
        .then(
          () => undefined,
          (err: unknown) =>
            this.ctx.log.warn(
              { err: toBackpackError(err).message },
              "S3 upload sweep failed; next one in a while",
            ),
        )
        .finally(() => (this.running = undefined));
    }, every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One sweep over every bucket; resolves with the uploads removed. */
  async sweep(): Promise<number> {
    let removed = 0;
    for (const bucket of Object.values(this.ctx.map.snapshot().s3.buckets)) {
      const base = uploadsPrefix(bucket.name);
      for (const file of await this.ctx.store.listAll(base, MAX_PER_SWEEP)) {
        const id = file.key.slice(base.length);
        const state = file.headers?.[META.state];
        let drop = false;
        if (state === "complete") {
          const key = decodeURIComponent(file.headers?.[META.key] ?? "");
          const object = await this.ctx.store.locate(objectName(bucket.name, key));
          drop = object?.headers?.[META.upload] !== id;
        } else {
          drop = this.ctx.now() - Date.parse(file.lastModified) >= this.ctx.config.uploadMaxAgeMs;
        }
        if (drop) {
          await dropUpload(this.ctx, bucket, id);
          removed++;
        }
      }
    }
    if (removed > 0) this.ctx.log.info({ removed }, "S3 uploads swept");
    return removed;
  }
}
