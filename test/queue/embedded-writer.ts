// A child process for the crash test: pushes batches of 10 tasks into an embedded queue forever and appends
// "pushed <n>" to the report file after batch n is acknowledged, until it is killed; "ready" on stdout once
// the queue is open. The report is written with synchronous writes: stdout on a pipe is asynchronous once the
// pipe is full, and what it still held would die with the SIGKILLed process.
import { appendFileSync } from "node:fs";
import { openQueue } from "../../src/queue/open.js";
import { sampleTask } from "./sample-task.js";

const [dir, report] = process.argv.slice(2);
if (!dir || !report) throw new Error("usage: embedded-writer <dir> <report>");
const q = await openQueue({ dir });
process.stdout.write("ready\n");
for (let b = 1; ; b++) {
  await q.push(Array.from({ length: 10 }, (_, i) => sampleTask(i, { key: `b${b}-${i}` })));
  appendFileSync(report, `pushed ${b}\n`);
}
