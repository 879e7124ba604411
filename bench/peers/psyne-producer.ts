// psyne producer, two ways. send: one message at a time, allocated in the channel (zero-copy),
// written in place, sent: tryAlloc(ByteVector, size) -> write -> send(). batch: sendBatch(n, size,
// write), which claims n records at once and calls write(bytes, offset, i) for each, with no object
// per message; it sends as many as fit (0 when full). Prints its RSS as JSON: at start (channel
// open), after WARMUP messages, and at the end (channel still open).
// Usage: bun psyne-producer.ts send|batch NAME SIZE COUNT TIMEOUT_MS BUFFER_BYTES BATCH WARMUP
import { ByteVector, ChannelMode, createChannel } from "../../src/index.ts";
import { deadline, Pattern } from "./pattern.ts";

const [how, name] = process.argv.slice(2, 4) as [string, string];
const [size, count, timeoutMs, bufferSize, batch, warmup] = process.argv.slice(4, 10).map(Number) as [number, number, number, number, number, number];
const pattern = new Pattern(size);
const expired = deadline(timeoutMs, `psyne producer (${how})`);
const ch = createChannel(`ipc://${name}`, { bufferSize, mode: ChannelMode.SPSC, role: "producer" });
const rss = [process.memoryUsage().rss];

let fullSpins = 0;
if (how === "send") {
  for (let seq = 0; seq < count; seq++) {
    let m = ch.tryAlloc(ByteVector, size);
    while (m === null) {
      // full: the consumer is behind; spin (both processes have a core each), checking the clock now and then
      if ((++fullSpins & 0xffff) === 0) expired();
      m = ch.tryAlloc(ByteVector, size);
    }
    pattern.write(m, 0, seq);
    ch.send(m);
    if (seq === warmup) rss.push(process.memoryUsage().rss);
  }
} else {
  let base = 0;
  const write = (bytes: Uint8Array, offset: number, i: number) => pattern.write(bytes, offset, base + i);
  while (base < count) {
    const sent = ch.sendBatch(Math.min(batch, count - base), size, write);
    if (sent === 0) {
      if ((++fullSpins & 0xffff) === 0) expired();
      continue;
    }
    if (base <= warmup && base + sent > warmup) rss.push(process.memoryUsage().rss);
    base += sent;
  }
}
rss.push(process.memoryUsage().rss); // before close(), which unmaps the ring
ch.close();
console.log(JSON.stringify({ rss, fullSpins }));
