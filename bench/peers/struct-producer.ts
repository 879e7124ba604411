// Sends COUNT 64-byte structs (bench/peers/struct.ts) one of four ways:
//   writer: Tick.writer(channel): claim(), fields, send(), no object per message
//   send:   new Tick(channel) (tryAlloc), fields, send(): the per-message API, one object each
//   batch:  sendBatch(BATCH, 64, write, Tick), fields written through a DataView at each offset
// Spins while the channel is full (both processes have a core each), checking the clock now and then.
// Usage: bun struct-producer.ts writer|send|batch NAME COUNT TIMEOUT_MS BUFFER_BYTES BATCH
import { ChannelMode, createChannel } from "../../src/index.ts";
import { deadline } from "./pattern.ts";
import { fill, SIZE, Tick, writeAt } from "./struct.ts";

const [how, name] = process.argv.slice(2, 4) as [string, string];
const [count, timeoutMs, bufferSize, batch] = process.argv.slice(4, 8).map(Number) as [number, number, number, number];
const expired = deadline(timeoutMs, `struct producer (${how})`);
const ch = createChannel(`ipc://${name}`, { bufferSize, mode: ChannelMode.SPSC, role: "producer" });

let fullSpins = 0;
if (how === "writer") {
  const w = Tick.writer(ch);
  for (let seq = 0; seq < count; seq++) {
    while (!w.claim()) if ((++fullSpins & 0xffff) === 0) expired();
    fill(w, seq);
    w.send();
  }
} else if (how === "send") {
  for (let seq = 0; seq < count; seq++) {
    let m = ch.tryAlloc(Tick);
    while (m === null) {
      if ((++fullSpins & 0xffff) === 0) expired();
      m = ch.tryAlloc(Tick);
    }
    fill(m, seq);
    ch.send(m);
  }
} else {
  let base = 0;
  let view: DataView | null = null;
  const write = (bytes: Uint8Array, offset: number, i: number) => writeAt((view ??= new DataView(bytes.buffer, bytes.byteOffset)), offset, base + i);
  while (base < count) {
    const sent = ch.sendBatch(Math.min(batch, count - base), SIZE, write, Tick);
    if (sent === 0) {
      if ((++fullSpins & 0xffff) === 0) expired();
      continue;
    }
    base += sent;
  }
}
ch.close();
console.log(JSON.stringify({ fullSpins }));
