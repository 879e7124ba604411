// Bun IPC consumer: spawns the producer as its child with `ipc` and checks every message the
// `ipc` callback delivers. It grants credit (acks) so the producer never has more than about
// 4 MiB in flight, like psyne's ring; without it process.send() buffers without limit.
// Usage: bun ipc-consumer.ts json|advanced SIZE COUNT TIMEOUT_MS; prints a Report as JSON.
import { Pattern, type Report } from "./pattern.ts";

const serialization = process.argv[2] as "json" | "advanced";
const [size, count, timeoutMs] = process.argv.slice(3, 6).map(Number) as [number, number, number];
const pattern = new Pattern(size);
const window = Math.max(64, Math.floor((4 << 20) / size)); // messages in flight
const ackEvery = window >> 2;

let received = 0;
let errors = 0;
let firstError: string | undefined;
let t0 = 0;
let elapsedMs = 0;
const done = Promise.withResolvers<void>();

const producer = Bun.spawn({
  cmd: [process.execPath, new URL("./ipc-producer.ts", import.meta.url).pathname, serialization, String(size), String(count), String(window)],
  serialization,
  stdio: ["ignore", "inherit", "inherit"],
  timeout: timeoutMs, // kills the producer if we hang
  ipc(message) {
    if (received === 0) t0 = performance.now();
    const ok = serialization === "json" ? pattern.checkString(message, received) : message instanceof Uint8Array && message.length === size && pattern.check(message, 0, received);
    if (!ok) {
      errors++;
      firstError ??= `message ${received}: ${String(message).slice(0, 40)}`;
    }
    received++;
    if (received === count) {
      elapsedMs = performance.now() - t0;
      producer.send(received); // the final ack lets the producer exit
      done.resolve();
    } else if (received % ackEvery === 0) producer.send(received);
  },
});

const timer = setTimeout(() => done.reject(new Error(`bun-ipc consumer: gave up after ${timeoutMs} ms with ${received}/${count}`)), timeoutMs);
try {
  await done.promise;
} catch (err) {
  console.error((err as Error).message);
  producer.kill(9);
  process.exit(3);
}
clearTimeout(timer);
const code = await producer.exited;
if (code !== 0) {
  console.error(`bun-ipc producer exited with ${code}`);
  process.exit(3);
}
const report: Report = { messages: received, errors, firstError, elapsedMs, note: `${serialization} serialization, window ${window}` };
console.log(JSON.stringify(report));
