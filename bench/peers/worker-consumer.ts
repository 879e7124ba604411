// Worker postMessage consumer: one process, whose main thread starts a Bun Worker
// (worker-producer.ts) that posts every message as a Uint8Array; the main thread checks each.
// copy: the worker reuses one buffer and postMessage structured-clones (copies) it per message.
// transfer: the worker posts each message with its ArrayBuffer in the transfer list (no copy; the
// worker loses it), and the main thread transfers the checked buffers back with its credit, so the
// worker reuses them instead of allocating one per message.
// Credit: at most about 4 MiB (and at least 64 messages) in flight, an ack every quarter of that,
// like the Bun IPC peers (postMessage never pushes back on its own).
// Usage: bun worker-consumer.ts copy|transfer SIZE COUNT TIMEOUT_MS; prints a Report as JSON.
import { Pattern, type Report } from "./pattern.ts";

const mode = process.argv[2] as "copy" | "transfer";
const [size, count, timeoutMs] = process.argv.slice(3, 6).map(Number) as [number, number, number];
const pattern = new Pattern(size);
const window = Math.max(64, Math.floor((4 << 20) / size));
const ackEvery = Math.max(1, window >> 2);

let received = 0;
let errors = 0;
let firstError: string | undefined;
let t0 = 0;
let elapsedMs = 0;
let returned: ArrayBuffer[] = [];
const done = Promise.withResolvers<void>();

const worker = new Worker(new URL("./worker-producer.ts", import.meta.url).href);
worker.onmessage = (event: MessageEvent) => {
  const message = event.data as Uint8Array;
  if (received === 0) t0 = performance.now();
  if (!(message instanceof Uint8Array) || message.length !== size || !pattern.check(message, 0, received)) {
    errors++;
    firstError ??= `message ${received}: ${String(message).slice(0, 40)}`;
  }
  received++;
  if (mode === "transfer") returned.push(message.buffer as ArrayBuffer);
  if (received === count) {
    elapsedMs = performance.now() - t0;
    done.resolve();
  } else if (received % ackEvery === 0) {
    worker.postMessage({ acked: received, buffers: returned }, returned);
    returned = [];
  }
};
worker.onerror = (event) => done.reject(new Error(`worker failed: ${event.message}`));
worker.postMessage({ mode, size, count, window });

const timer = setTimeout(() => done.reject(new Error(`worker consumer: gave up after ${timeoutMs} ms with ${received}/${count}`)), timeoutMs);
try {
  await done.promise;
} catch (err) {
  console.error((err as Error).message);
  process.exit(3);
}
clearTimeout(timer);
await worker.terminate();
const report: Report = { messages: received, errors, firstError, elapsedMs, note: `${mode}, window ${window}` };
console.log(JSON.stringify(report));
