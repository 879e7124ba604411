// A ProcessPool worker: runs the pool's script on each task it takes and sends back the result.
// It releases a task only after its result is sent, so if it dies mid-task the task runs again.
// args: script tasksUri resultsUri
import { pathToFileURL } from "node:url";
import { createChannel } from "../core/channel";
import { decodeFrame, decodeValue, encodeFailure, encodeFrame, encodeValue } from "./codec";
import { RESULT, RETIRE_KIND, TASK } from "./pool";

const [script, tasksUri, resultsUri] = process.argv.slice(2) as [string, string, string];
const run = (await import(pathToFileURL(script).href)).default as (task: unknown) => unknown;
if (typeof run !== "function") {
  console.error(`psyne pool: ${script} has no default export function`);
  process.exit(2);
}
// The pool's process owns us: if it dies (even by SIGKILL), we have no one to work for.
const owner = process.ppid;
setInterval(() => {
  if (process.ppid !== owner) process.exit(0);
}, 250).unref();

const tasks = createChannel(tasksUri, { open: "attach", role: "consumer" });
const results = createChannel(resultsUri, { open: "attach", role: "producer" });

for await (const message of tasks.messages()) {
  const frame = decodeFrame(TASK, message.bytes());
  if (!frame) continue;
  if (frame.kind === RETIRE_KIND) break;
  let reply;
  try {
    reply = encodeValue(await run(decodeValue(frame.kind, frame.value)));
  } catch (err) {
    reply = encodeFailure(err);
  }
  await results.sendAsync(encodeFrame(RESULT, frame.id, "", reply));
}
tasks.close();
results.close();
