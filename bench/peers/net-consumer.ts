// psyne network consumer (tcp:// or unix://, the listening end), checking every message in place.
// send: receive(ByteVector) one message view at a time; batch: drainBytes(read). Whenever nothing is
// there it awaits recv() (the socket is read on this thread: a busy poll would starve it).
// Prints "listening ADDRESS", then a Report as JSON with its RSS at start, after WARMUP and at the end.
// Usage: bun net-consumer.ts send|batch URI SIZE COUNT TIMEOUT_MS BUFFER_BYTES WARMUP
import { ByteVector, ChannelMode, createChannel } from "../../src/index.ts";
import { deadline, Pattern, type Report } from "./pattern.ts";

const [how, uri] = process.argv.slice(2, 4) as [string, string];
const [size, count, timeoutMs, bufferSize, warmup] = process.argv.slice(4, 9).map(Number) as [number, number, number, number, number];
const pattern = new Pattern(size);
deadline(timeoutMs, `net consumer (${how})`);
const ch = createChannel(uri, { bufferSize, mode: ChannelMode.SPSC, listen: true });
const listening = ch.stats().listening!;
console.log(`listening ${uri.startsWith("unix:") ? uri : `tcp://${listening}`}`);
const rss = [process.memoryUsage().rss];

let received = 0;
let errors = 0;
let firstError: string | undefined;
let t0 = 0;
let waits = 0;
const check = (bytes: Uint8Array, offset: number, length: number) => {
  if (received === 0) t0 = performance.now();
  if (length !== size || !pattern.check(bytes, offset, received)) {
    errors++;
    firstError ??= `message ${received}: length ${length}, bytes ${Array.from(bytes.subarray(offset, offset + 8)).join(",")}`;
  }
  if (received === warmup) rss.push(process.memoryUsage().rss);
  received++;
};
const wait = async () => {
  waits++;
  const m = await ch.recv(ByteVector, { timeout: timeoutMs });
  if (m === null) throw new Error(`net consumer: nothing for ${timeoutMs} ms after ${received}`);
  check(m, 0, m.length);
};
if (how === "send") {
  while (received < count) {
    const m = ch.receive(ByteVector); // valid until the next receive()
    if (m === null) await wait();
    else check(m, 0, m.length);
  }
} else {
  while (received < count) if (ch.drainBytes(check, count - received) === 0) await wait();
}
const elapsedMs = performance.now() - t0;
rss.push(process.memoryUsage().rss);
ch.close(); // acknowledges the last messages
const report: Report & { rss: number[] } = { messages: received, errors, firstError, elapsedMs, note: `${waits} waits`, rss };
console.log(JSON.stringify(report));
