// A child process for the crash test: pushes batches of 10 tasks into an embedded queue forever and prints
// "pushed <n>" after batch n is acknowledged, until it is killed.
import { openQueue } from "../../src/queue/open.js";
import { sampleTask } from "./sample-task.js";

const dir = process.argv[2];
if (!dir) throw new Error("usage: embedded-writer <dir>");
const q = await openQueue({ dir });
for (let b = 1; ; b++) {
  await q.push(Array.from({ length: 10 }, (_, i) => sampleTask(i, { key: `b${b}-${i}` })));
  process.stdout.write(`pushed ${b}\n`);
}
