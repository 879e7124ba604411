// Stream socket producer (Unix domain socket or TCP on loopback): writes fixed-size messages in
// batches of about 64 KiB per write() (one message per write above that), and on a short write
// waits for `drain` (Bun's socket.write does not queue what it could not write).
// Usage: bun socket-producer.ts unix:PATH|tcp:PORT SIZE COUNT TIMEOUT_MS (from socket-consumer's "listening" line)
import { Pattern } from "./pattern.ts";

const address = process.argv[2]!;
const [size, count, timeoutMs] = process.argv.slice(3, 6).map(Number) as [number, number, number];
const pattern = new Pattern(size);
const perBatch = Math.max(1, Math.floor(65536 / size));
const batch = new Uint8Array(perBatch * size);

// the consumer is listening already (the orchestrator waits for its "listening" line)
function connect() {
  const socket = { drain: pump, data() {}, close: () => process.exit(sent === count ? 0 : 1) };
  return address.startsWith("unix:")
    ? Bun.connect({ unix: address.slice(5), socket })
    : Bun.connect({ hostname: "127.0.0.1", port: Number(address.slice(4)), socket });
}

let sent = 0; // messages written into batches so far
let pending: Uint8Array | null = null; // the part of the current batch not yet accepted by the kernel
function pump(socket: { write(b: Uint8Array): number; end(): void }): void {
  for (;;) {
    if (pending === null) {
      if (sent === count) return socket.end();
      const n = Math.min(perBatch, count - sent);
      for (let i = 0; i < n; i++) pattern.write(batch, i * size, sent + i);
      sent += n;
      pending = batch.subarray(0, n * size);
    }
    const written = socket.write(pending);
    if (written < pending.length) {
      pending = pending.subarray(Math.max(0, written));
      return; // drain calls pump again
    }
    pending = null;
  }
}

setTimeout(() => {
  console.error(`socket producer: gave up after ${timeoutMs} ms at ${sent}/${count}`);
  process.exit(3);
}, timeoutMs).unref();
pump(await connect());
