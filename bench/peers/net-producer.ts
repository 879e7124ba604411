// psyne network producer (tcp:// or unix://, the connecting end), two ways. send: tryAlloc(ByteVector,
// size) -> write in place -> send(), one call per message; batch: sendBatch(n, size, write). When the
// send ring is full it awaits room (allocAsync): the acknowledgements that free it arrive on this thread.
// Ends with flush(): every message acknowledged. Prints its RSS (start, after WARMUP, end) as JSON.
// Usage: bun net-producer.ts send|batch URI SIZE COUNT TIMEOUT_MS BUFFER_BYTES BATCH WARMUP
import { ByteVector, ChannelMode, createChannel } from "../../src/index.ts";
import { deadline, Pattern } from "./pattern.ts";

const [how, uri] = process.argv.slice(2, 4) as [string, string];
const [size, count, timeoutMs, bufferSize, batch, warmup] = process.argv.slice(4, 10).map(Number) as [number, number, number, number, number, number];
const pattern = new Pattern(size);
deadline(timeoutMs, `net producer (${how})`);
const ch = createChannel(uri, { bufferSize, mode: ChannelMode.SPSC });
await ch.ready({ timeout: timeoutMs });
const rss = [process.memoryUsage().rss];

let waits = 0;
let seq = 0;
const sendOneWaiting = async () => {
  waits++;
  const m = await ByteVector.allocAsync(ch, size, { timeout: timeoutMs });
  pattern.write(m, 0, seq++);
  ch.send(m);
};
if (how === "send") {
  while (seq < count) {
    const m = ch.tryAlloc(ByteVector, size);
    if (m === null) await sendOneWaiting();
    else {
      pattern.write(m, 0, seq++);
      ch.send(m);
    }
    if (seq === warmup) rss.push(process.memoryUsage().rss);
  }
} else {
  let base = 0;
  const write = (bytes: Uint8Array, offset: number, i: number) => pattern.write(bytes, offset, base + i);
  while (seq < count) {
    base = seq;
    const sent = ch.sendBatch(Math.min(batch, count - seq), size, write);
    if (sent === 0) await sendOneWaiting();
    else seq += sent;
    if (base <= warmup && seq > warmup) rss.push(process.memoryUsage().rss);
  }
}
await ch.flush({ timeout: timeoutMs });
rss.push(process.memoryUsage().rss);
ch.close();
console.log(JSON.stringify({ rss, waits }));
