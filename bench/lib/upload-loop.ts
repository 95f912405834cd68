import { readFileSync } from "node:fs";
import { Agent, request } from "undici";

/** One upload's answer and when it came (ms, `performance.now()`). */
export interface UploadAnswer {
  at: number;
  status: number;
}

/**
 * Uploads `body` from `concurrency` loops (each its own keep-alive connection) to `<url><prefix><n>`, n cycling
 * through `keys`, until `running()` turns false; every answer is kept with its time, so that a caller can count
 * the errors of a window (a connection error counts as status 0). For loads wrk cannot time per request.
 */
export async function uploadLoop(o: {
  url: string;
  concurrency: number;
  body: Buffer;
  prefix: string;
  keys: number;
  running: () => boolean;
  headers?: Record<string, string>;
}): Promise<UploadAnswer[]> {
  const agent = new Agent({ connections: o.concurrency, pipelining: 1 });
  const answers: UploadAnswer[] = [];
  let n = 0;
  try {
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (o.running()) {
          const key = `${o.prefix}${n++ % o.keys}`;
          let status = 0;
          try {
            const res = await request(`${o.url}/${key}`, {
              method: "PUT",
              body: o.body,
              headers: o.headers,
              dispatcher: agent,
              headersTimeout: 60_000,
            });
            await res.body.dump();
            status = res.statusCode;
          } catch {
            status = 0;
          }
          answers.push({ at: performance.now(), status });
        }
      }),
    );
  } finally {
    await agent.close();
  }
  return answers;
}

/** The resident memory of a process (bytes), from /proc; undefined where it cannot be read. */
export function residentBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Samples a process's resident memory every `everyMs` until `stop()`, which returns the largest seen. */
export function sampleResident(pid: number, everyMs = 50): { stop(): number } {
  let max = residentBytes(pid) ?? 0;
  const timer = setInterval(() => {
    max = Math.max(max, residentBytes(pid) ?? 0);
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(max, residentBytes(pid) ?? 0);
    },
  };
}
