import { createReadStream } from "node:fs";
import mime from "mime";
import { readdir, stat } from "node:fs/promises";
import { basename, join, relative, sep } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { BackpackError, toBackpackError } from "../../../common/errors.js";
import { validateKey } from "../../../common/key.js";
import { formatBytes } from "../../../common/units.js";
import { ProgressBar } from "../../progress.js";
import { optInt, optString, type Command } from "../../command.js";
import { clientContext, explain, isTransient, JSON_OPTION, TO_OPTION, TOKEN_OPTION } from "./common.js";

interface UploadItem {
  file: string;
  key: string;
  size: number;
}

interface UploadResult extends UploadItem {
  shard?: string;
  error?: string;
  attempts: number;
}

export const command: Command = {
  spec: {
    name: "backpack put",
    summary:
      "Uploads files through a coordinator; a directory is uploaded recursively, each file under its path relative to the directory.",
    positionals: [{ name: "paths", description: "files and directories to upload", variadic: true }],
    options: [
      TO_OPTION,
      { name: "prefix", type: "string", description: "prepended to every key, e.g. photos/" },
      { name: "concurrency", type: "string", description: "uploads at once", default: "8" },
      {
        name: "retries",
        type: "string",
        description: "extra tries for transient errors (503, timeouts, resets)",
        default: "3",
      },
      { name: "replicas", type: "string", description: "all: wait until every replica holds each file" },
      TOKEN_OPTION,
      JSON_OPTION,
    ],
    notes: `
Keys: a file given by name is stored under its base name; files found in a directory under their path relative
to that directory (with / separators), e.g. "backpack put photos" stores photos/a/b.jpg as a/b.jpg. --prefix is
prepended to every key.

Content types: each file is stored with the type its name says (hi.txt text/plain, a.jpg image/jpeg, from the
mime package's table of IANA types and common extensions), answered as Content-Type on every read; a name with
no known type is stored without one (read back as application/octet-stream). Uploading a name again stores a
new file on whatever shard is chosen, next to the old one: see "Overwriting" in docs/http-api.md.

Output: one line per stored file, with the address to read it at:
  <shard>:<key>  <size>  <file>
on a terminal above a progress bar (files, bytes sent, rate, and an ETA once the upload has run for 2 s).
Failures are listed as they happen and again in the summary. With --json, one JSON document at the end:
{"uploaded":[{"file","key","shard","size"}],"failed":[{"file","key","error"}]}. Each file is read back with
backpack get <shard>:<key>.

Exit codes: 0 every file stored; 1 any file failed (the others are stored); 2 wrong arguments.

Example:
  backpack put ./site --prefix site/ --to http://one:12001`,
  },

  async run(args, io) {
    const concurrency = optInt(args, "concurrency", 1) ?? 8;
    const retries = optInt(args, "retries", 0) ?? 3;
    const replicas = optString(args, "replicas");
    if (replicas !== undefined && replicas !== "all") {
      throw new BackpackError("INVALID_ARGUMENT", `--replicas must be "all", got "${replicas}"`);
    }
    const json = args.options.json === true;
    const items = await collect(args.rest, optString(args, "prefix") ?? "");
    const ctx = clientContext(args, io, concurrency);
    const bar = new ProgressBar(io.stderr, io.isTTY && !json);
    const started = Date.now();
    const state = {
      filesDone: 0,
      filesTotal: items.length,
      filesFailed: 0,
      bytesDone: 0,
      bytesTotal: 0,
      elapsedMs: 0,
    };
    state.bytesTotal = items.reduce((n, i) => n + i.size, 0);
    let storedBytes = 0;
    const results: UploadResult[] = [];
    const tick = (): void => bar.update({ ...state, elapsedMs: Date.now() - started });
    const timer = setInterval(tick, 200);
    try {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < items.length) {
          const item = items[next++] as UploadItem;
          const result = await upload(item);
          results.push(result);
          if (result.error === undefined) {
            state.filesDone++;
            storedBytes += item.size;
            if (!json) {
              // On a terminal the line goes above the progress bar; otherwise to stdout, for scripts.
              const line = `${result.shard}:${item.key}  ${formatBytes(item.size)}  ${item.file}`;
              if (io.isTTY) bar.log(line);
              else io.stdout(`${line}\n`);
            }
          } else {
            state.filesFailed++;
            if (!json) bar.log(`failed: ${item.file}: ${result.error}`);
          }
          tick();
        }
      };
      const upload = async (item: UploadItem): Promise<UploadResult> => {
        // The type from the file name (`.txt` → text/plain); a name no type is known for goes without one.
        const contentType = mime.getType(item.file) ?? undefined;
        for (let attempt = 1; ; attempt++) {
          // The bar counts bytes as they are sent; an attempt that fails takes its bytes back.
          let sent = 0;
          const file = createReadStream(item.file);
          const body = counted(file, (n) => {
            sent += n;
            state.bytesDone += n;
          });
          try {
            const { shardId } = await ctx.client.put(ctx.base, item.key, body, {
              size: item.size,
              ...(contentType ? { contentType } : {}),
              ...(replicas === "all" ? { replicas: "all" as const } : {}),
            });
            state.bytesDone += item.size - sent;
            return { ...item, shard: shardId, attempts: attempt };
          } catch (err) {
            state.bytesDone -= sent;
            file.destroy();
            if (attempt > retries || !isTransient(err) || io.stopSignal.aborted) {
              return { ...item, error: explain(toBackpackError(err), ctx.base), attempts: attempt };
            }
            await sleep(Math.min(5000, 200 * 2 ** (attempt - 1)) * (0.5 + Math.random()));
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
    } finally {
      clearInterval(timer);
      bar.update({ ...state, elapsedMs: Date.now() - started }, true);
      bar.done();
      await ctx.close();
    }
    const failed = results.filter((r) => r.error !== undefined);
    if (json) {
      const uploaded = results
        .filter((r) => r.error === undefined)
        .map(({ file, key, shard, size }) => ({ file, key, shard, size }));
      io.stdout(
        JSON.stringify({ uploaded, failed: failed.map(({ file, key, error }) => ({ file, key, error })) }) +
          "\n",
      );
    } else {
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      io.stderr(
        `uploaded ${state.filesDone} of ${items.length} files (${formatBytes(storedBytes)}) in ${secs}s\n`,
      );
      if (failed.length > 0) {
        io.stderr(
          `${failed.length} failed:\n${failed.map((f) => `  ${f.file}: ${f.error ?? ""}`).join("\n")}\n`,
        );
      }
    }
    return failed.length > 0 ? 1 : 0;
  },
};

/** Passes a file's chunks on, telling how many bytes each one has. */
async function* counted(source: AsyncIterable<Buffer>, onBytes: (n: number) => void): AsyncIterable<Buffer> {
  for await (const chunk of source) {
    onBytes(chunk.length);
    yield chunk;
  }
}

/** Every regular file under the given paths, with its key; refuses the run before uploading if a key is bad. */
async function collect(paths: readonly string[], prefix: string): Promise<UploadItem[]> {
  const items: UploadItem[] = [];
  for (const path of paths) {
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      throw new BackpackError("INVALID_ARGUMENT", `cannot read ${path}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (st.isFile()) {
      items.push({ file: path, key: makeKey(prefix, basename(path)), size: st.size });
    } else if (st.isDirectory()) {
      const entries = await readdir(path, { recursive: true, withFileTypes: true });
      for (const e of entries) {
        if (!e.isFile()) continue;
        const file = join(e.parentPath, e.name);
        const rel = relative(path, file).split(sep).join("/");
        items.push({ file, key: makeKey(prefix, rel), size: (await stat(file)).size });
      }
    } else {
      throw new BackpackError("INVALID_ARGUMENT", `${path} is neither a file nor a directory`);
    }
  }
  items.sort((a, b) => a.key.localeCompare(b.key));
  return items;
}

function makeKey(prefix: string, rel: string): string {
  const key = prefix + rel;
  try {
    return validateKey(key);
  } catch (err) {
    throw new BackpackError("INVALID_ARGUMENT", `cannot use "${key}" as a key: ${(err as Error).message}`);
  }
}
