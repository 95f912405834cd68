import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { tempDir } from "../helpers/tmp.js";
import { bytes, startS3Cluster } from "./fixture.js";

const run = promisify(execFile);

/** Every file under `dir` by its relative path, with its bytes. */
async function tree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const path = join(e.parentPath, e.name);
    out.set(relative(dir, path), await readFile(path));
  }
  return out;
}

test("rclone (Debian's package) syncs a directory up to a bucket and back down, byte for byte", async (t) => {
  const f = await startS3Cluster(t);
  const work = await tempDir(t);
  const up = join(work, "up");
  const down = join(work, "down");
  const files: [string, Buffer][] = [
    ["a.txt", Buffer.from("hello\n")],
    ["empty", Buffer.alloc(0)],
    ["nested/deeper/one.bin", bytes(1024 ** 2 + 7)],
    ["nested/two words.txt", Buffer.from("two words")],
    ["nested/café.txt", Buffer.from("unicode name")],
    ["big/large.bin", bytes(12 * 1024 ** 2)],
  ];
  for (const [name, data] of files) {
    await mkdir(join(up, name, ".."), { recursive: true });
    await writeFile(join(up, name), data);
  }
  // Only this test's settings: an AWS_CA_BUNDLE or AWS_PROFILE of the machine would change what rclone does.
  const own = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("AWS_")));
  const env = {
    ...own,
    RCLONE_CONFIG: join(work, "rclone.conf"),
    RCLONE_CONFIG_BP_TYPE: "s3",
    RCLONE_CONFIG_BP_PROVIDER: "Other",
    RCLONE_CONFIG_BP_ENDPOINT: f.endpoint,
    RCLONE_CONFIG_BP_ACCESS_KEY_ID: f.key.id,
    RCLONE_CONFIG_BP_SECRET_ACCESS_KEY: f.key.secret,
    RCLONE_CONFIG_BP_REGION: "us-east-1",
    RCLONE_CONFIG_BP_FORCE_PATH_STYLE: "true",
  };
  const rclone = (...args: string[]) =>
    run("rclone", [...args, "--retries", "1", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"], { env });
  await rclone("mkdir", "bp:synced");
  await rclone("sync", up, "bp:synced/dir");
  await rclone("sync", "bp:synced/dir", down);
  const sent = await tree(up);
  const got = await tree(down);
  assert.deepEqual([...got.keys()].sort(), [...sent.keys()].sort());
  for (const [name, data] of sent) assert.ok(got.get(name)?.equals(data), `${name} came back different`);

  // A change and a removal travel too.
  await writeFile(join(up, "a.txt"), "changed\n");
  await writeFile(join(up, "nested/two words.txt"), "");
  await run("rm", [join(up, "empty")]);
  await rclone("sync", up, "bp:synced/dir");
  await rclone("sync", "bp:synced/dir", down);
  const again = await tree(down);
  assert.equal(again.get("a.txt")?.toString(), "changed\n");
  assert.equal(again.has("empty"), false);
  await rclone("check", up, "bp:synced/dir");
});
