import { Agent, request } from "undici";

/**
 * PUTs `<prefix>0` … `<prefix><keys-1>` with `bytes`-long bodies, `concurrency` at a time, so a GET run that
 * follows finds every key (a PUT run alone may not reach them all on a slow machine). Throws on any non-2xx.
 */
export async function fillKeys(
  base: string,
  prefix: string,
  keys: number,
  bytes: number,
  concurrency = 16,
): Promise<void> {
  const agent = new Agent({ connections: concurrency });
  const body = Buffer.alloc(bytes, "b");
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < keys) {
      const n = next++;
      const res = await request(`${base}${prefix}${n}`, { method: "PUT", body, dispatcher: agent });
      await res.body.dump();
      if (res.statusCode >= 300) throw new Error(`fill: PUT ${prefix}${n} answered ${res.statusCode}`);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    await agent.close();
  }
}
