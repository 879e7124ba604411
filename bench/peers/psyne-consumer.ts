// psyne consumer, two ways, busy-polling (it never blocks) and checking every message in place.
// send: receive(ByteVector), one message view at a time (valid until the next receive()).
// batch: drainBytes(read), which calls read(bytes, offset, length, typeId) for every message
// available, with no object per message. Prints a Report as JSON, with its RSS at start (channel
// open), after WARMUP messages, and at the end (channel still open).
// Usage: bun psyne-consumer.ts send|batch NAME SIZE COUNT TIMEOUT_MS BUFFER_BYTES BATCH WARMUP
import { ByteVector, ChannelMode, createChannel } from "../../src/index.ts";
import { deadline, Pattern, type Report } from "./pattern.ts";

const [how, name] = process.argv.slice(2, 4) as [string, string];
const [size, count, timeoutMs, bufferSize, , warmup] = process.argv.slice(4, 10).map(Number) as [number, number, number, number, number, number];
const pattern = new Pattern(size);
const expired = deadline(timeoutMs, `psyne consumer (${how})`);
const ch = createChannel(`ipc://${name}`, { bufferSize, mode: ChannelMode.SPSC, role: "consumer" });
const rss = [process.memoryUsage().rss];

let received = 0;
let errors = 0;
let firstError: string | undefined;
let emptyPolls = 0;
let t0 = 0;
if (how === "send") {
  while (received < count) {
    const m = ch.receive(ByteVector); // valid until the next receive()
    if (m === null) {
      if ((++emptyPolls & 0xffff) === 0) expired();
      continue;
    }
    if (received === 0) t0 = performance.now();
    if (m.length !== size || !pattern.check(m, 0, received)) {
      errors++;
      firstError ??= `message ${received}: length ${m.length}, bytes ${Array.from(m.subarray(0, 8)).join(",")}`;
    }
    if (received === warmup) rss.push(process.memoryUsage().rss);
    received++;
  }
} else {
  const read = (bytes: Uint8Array, offset: number, length: number) => {
    if (length !== size || !pattern.check(bytes, offset, received)) {
      errors++;
      firstError ??= `message ${received}: length ${length}, bytes ${Array.from(bytes.subarray(offset, offset + 8)).join(",")}`;
    }
    received++;
  };
  while (received < count) {
    if (received === 0) t0 = performance.now(); // the drain that gets the first messages starts the clock
    const before = received;
    if (ch.drainBytes(read, count - received) === 0) {
      if ((++emptyPolls & 0xffff) === 0) expired();
      continue;
    }
    if (before <= warmup && received > warmup) rss.push(process.memoryUsage().rss);
  }
}
const elapsedMs = performance.now() - t0;
rss.push(process.memoryUsage().rss); // before close(), which unmaps the ring
ch.close();
const report: Report & { rss: number[] } = { messages: received, errors, firstError, elapsedMs, note: `${emptyPolls} empty polls`, rss };
console.log(JSON.stringify(report));
