// Stream socket consumer (a Unix domain socket or TCP on loopback): listens, prints
// "listening ADDRESS" (unix:PATH, or tcp:PORT on 127.0.0.1 with a port the kernel picked), splits
// the byte stream into fixed-size messages (a message may straddle two reads) and checks each one
// where it lies in the read buffer.
// Usage: bun socket-consumer.ts unix:PATH|tcp SIZE COUNT TIMEOUT_MS; prints a Report as JSON.
import { Pattern, type Report } from "./pattern.ts";

const address = process.argv[2]!;
const [size, count, timeoutMs] = process.argv.slice(3, 6).map(Number) as [number, number, number];
const pattern = new Pattern(size);
const carry = new Uint8Array(size); // the start of a message cut by the end of a read
let carried = 0;

let received = 0;
let errors = 0;
let firstError: string | undefined;
let t0 = 0;

function check(buf: Uint8Array, off: number): void {
  if (!pattern.check(buf, off, received)) {
    errors++;
    firstError ??= `message ${received}: bytes ${Array.from(buf.subarray(off, off + 8)).join(",")}`;
  }
  received++;
}

const done = Promise.withResolvers<number>();
const handlers = {
  data(_socket: unknown, chunk: Uint8Array) {
    if (received === 0 && carried === 0) t0 = performance.now();
    let off = 0;
    if (carried > 0) {
      const take = Math.min(size - carried, chunk.length);
      carry.set(chunk.subarray(0, take), carried);
      carried += take;
      off = take;
      if (carried < size) return;
      check(carry, 0);
      carried = 0;
    }
    for (; off + size <= chunk.length; off += size) check(chunk, off);
    if (off < chunk.length) {
      carry.set(chunk.subarray(off), 0);
      carried = chunk.length - off;
    }
    if (received >= count) done.resolve(performance.now() - t0);
  },
  close() {
    if (received < count) done.reject(new Error(`socket consumer: producer closed after ${received}/${count} messages`));
  },
};
const server = address.startsWith("unix:")
  ? Bun.listen({ unix: address.slice(5), socket: handlers })
  : Bun.listen({ hostname: "127.0.0.1", port: 0, socket: handlers });
console.log(`listening ${address.startsWith("unix:") ? address : `tcp:${(server as { port: number }).port}`}`);

const timer = setTimeout(() => done.reject(new Error(`socket consumer: gave up after ${timeoutMs} ms with ${received}/${count}`)), timeoutMs);
let elapsedMs: number;
try {
  elapsedMs = await done.promise;
} catch (err) {
  console.error((err as Error).message);
  process.exit(3);
}
clearTimeout(timer);
server.stop(true);
const report: Report = { messages: received, errors, firstError, elapsedMs };
console.log(JSON.stringify(report));
