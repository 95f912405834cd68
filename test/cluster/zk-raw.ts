import zookeeper, { type Client } from "node-zookeeper-client";
import type { TestContext } from "node:test";

/** A plain ZooKeeper client for tests that write znodes by hand (as the original tools did) and read them back. */
export interface RawZk {
  client: Client;
  set(path: string, text: string): Promise<void>;
  get(path: string): Promise<string | undefined>;
  /** Every znode under `root` with its text, for "nothing changed" checks. */
  tree(root: string): Promise<Record<string, string>>;
}

export async function rawZk(t: Pick<TestContext, "after">, connectString: string): Promise<RawZk> {
  const client = zookeeper.createClient(connectString, { sessionTimeout: 10_000, spinDelay: 200 });
  t.after(() => client.close());
  await new Promise<void>((resolve) => {
    client.once("connected", () => resolve());
    client.connect();
  });
  const get = (path: string): Promise<string | undefined> =>
    new Promise((resolve, reject) =>
      client.getData(path, (err, data) => {
        if (err && (err as { code?: number }).code === zookeeper.Exception.NO_NODE) resolve(undefined);
        else if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve(data ? data.toString("utf8") : "");
      }),
    );
  const children = (path: string): Promise<string[]> =>
    new Promise((resolve, reject) =>
      client.getChildren(path, (err, list) => {
        if (err && (err as { code?: number }).code === zookeeper.Exception.NO_NODE) resolve([]);
        else if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve(list);
      }),
    );
  return {
    client,
    get,
    async set(path, text) {
      const data = Buffer.from(text);
      await new Promise<void>((resolve, reject) =>
        client.mkdirp(path, (err) =>
          err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
        ),
      );
      await new Promise<void>((resolve, reject) =>
        client.setData(path, data, (err) =>
          err ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(),
        ),
      );
    },
    async tree(root) {
      const out: Record<string, string> = {};
      for (const name of (await children(root)).sort()) out[name] = (await get(`${root}/${name}`)) ?? "";
      return out;
    },
  };
}
