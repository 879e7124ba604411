// A ProcessPool worker: loads the pool's script, then runs it on each task it takes and sends
// back the result on its own result channel. Before it lets a task go from the task channel, it
// tells the pool it runs it, so whenever it dies the task is held either by the channel or by
// the pool. args: script tasksUri resultsUri
import { pathToFileURL } from "node:url";
import { createChannel } from "../core/channel";
import { MessageTooLargeError } from "../core/errors";
import { decodeFrame, decodeValue, type Encoded, encodeFailure, encodeFrame, encodeValue, textOf } from "./codec";
import { LOAD_FAILED_KIND, READY_KIND, RESULT, RETIRE_KIND, RETIRED_KIND, STARTED_KIND, TASK } from "./pool";

const [script, tasksUri, resultsUri] = process.argv.slice(2) as [string, string, string];
const empty = new Uint8Array(0);

// The pool's process owns us: if it dies (even by SIGKILL), we have no one to work for.
const owner = process.ppid;
setInterval(() => {
  if (process.ppid !== owner) process.exit(0);
}, 250).unref();

const results = createChannel(resultsUri, { open: "attach", role: "producer" });
const send = (id: number, tag: string, value: Encoded) => results.sendAsync(encodeFrame(RESULT, id, tag, value));

let run: (task: unknown) => unknown;
try {
  const loaded = (await import(pathToFileURL(script).href)).default as unknown;
  if (typeof loaded !== "function") throw new TypeError(`its default export is not a function (it is ${loaded === null ? "null" : typeof loaded})`);
  run = loaded as (task: unknown) => unknown;
} catch (err) {
  const why = err instanceof Error ? textOf(err.message) : textOf(err);
  await send(0, "", { kind: LOAD_FAILED_KIND, bytes: new TextEncoder().encode(why) });
  results.close();
  process.exit(2);
}
await send(0, "", { kind: READY_KIND, bytes: empty });

const tasks = createChannel(tasksUri, { open: "attach", role: "consumer" });
for (;;) {
  const message = tasks.receive() ?? (await tasks.recv());
  if (!message) continue;
  const frame = decodeFrame(TASK, message.bytes());
  if (!frame) {
    message.release();
    continue;
  }
  if (frame.kind === RETIRE_KIND) {
    await send(0, "", { kind: RETIRED_KIND, bytes: empty });
    message.release();
    break;
  }
  let task: unknown;
  let unreadable: { error: unknown } | null = null;
  try {
    task = decodeValue(frame.kind, frame.value);
  } catch (error) {
    unreadable = { error };
  }
  await send(frame.id, frame.tag, { kind: STARTED_KIND, bytes: empty }); // the pool holds it from here
  message.release();
  let result: Encoded;
  try {
    if (unreadable) throw unreadable.error;
    result = encodeValue(await run(task));
  } catch (err) {
    result = encodeFailure(err);
  }
  try {
    await send(frame.id, "", result);
  } catch (err) {
    if (!(err instanceof MessageTooLargeError)) throw err;
    const why = new MessageTooLargeError(
      `result of ${result.bytes.byteLength} bytes does not fit the pool's result channel of ${results.bufferSize} bytes (the pool's bufferSize option sets it)`,
      err.size,
      err.maxSize,
    );
    await send(frame.id, "", encodeFailure(why));
  }
}
tasks.close();
results.close();
