// psyne producer: allocates each message in the channel (zero-copy), writes it, sends it.
// Usage: bun psyne-producer.ts NAME SIZE COUNT TIMEOUT_MS
import { ByteVector, ChannelMode, createChannel } from "../../src/index.ts";
import { deadline, Pattern } from "./pattern.ts";

const [name, size, count, timeoutMs] = [process.argv[2], ...process.argv.slice(3, 6).map(Number)];
const pattern = new Pattern(size);
const expired = deadline(timeoutMs, "psyne producer");
const ch = createChannel(`ipc://${name}`, { bufferSize: 4 << 20, mode: ChannelMode.SPSC, role: "producer" });

let fullSpins = 0;
for (let seq = 0; seq < count; seq++) {
  let m = ch.tryAlloc(ByteVector, size);
  while (m === null) {
    // full: the consumer is behind; spin (both processes have a core each), checking the clock now and then
    if ((++fullSpins & 0xffff) === 0) expired();
    m = ch.tryAlloc(ByteVector, size);
  }
  pattern.write(m, 0, seq);
  ch.send(m);
}
ch.close();
