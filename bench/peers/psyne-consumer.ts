// psyne consumer: busy-polls receive() (it never blocks) and checks every message in place.
// Usage: bun psyne-consumer.ts NAME SIZE COUNT TIMEOUT_MS; prints a Report as JSON.
import { ByteVector, ChannelMode, createChannel } from "../../src/index.ts";
import { deadline, Pattern, type Report } from "./pattern.ts";

const [name, size, count, timeoutMs] = [process.argv[2], ...process.argv.slice(3, 6).map(Number)];
const pattern = new Pattern(size);
const expired = deadline(timeoutMs, "psyne consumer");
const ch = createChannel(`ipc://${name}`, { bufferSize: 4 << 20, mode: ChannelMode.SPSC, role: "consumer" });

let received = 0;
let errors = 0;
let firstError: string | undefined;
let emptyPolls = 0;
let t0 = 0;
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
  received++;
}
const elapsedMs = performance.now() - t0;
ch.close();
const report: Report = { messages: received, errors, firstError, elapsedMs, note: `${emptyPolls} empty polls` };
console.log(JSON.stringify(report));
