// A producer of bench/modes.ts: takes the producer role, prints "ready", waits for a line on stdin
// ("go"), then sends COUNT stamped 64-byte messages: tryAlloc(ByteVector, 64) (null when full: spin,
// then yield with Bun.sleepSync(0)), write in place, send(). Prints what it did as JSON.
// Usage: bun mode-producer.ts URI MODE BUFFER_SIZE ID COUNT TIMEOUT_MS
import { ByteVector, type ChannelMode, createChannel } from "../../src/index.ts";
import { deadline } from "./pattern.ts";
import { MESSAGE_SIZE, SPINS, wallMs, writeStamp } from "./stamp.ts";

const [uri, mode] = process.argv.slice(2, 4) as [string, string];
const [bufferSize, id, count, timeoutMs] = process.argv.slice(4, 8).map(Number) as [number, number, number, number];
const expired = deadline(timeoutMs, `producer ${id}`);
const ch = createChannel(uri, { bufferSize, mode: mode as ChannelMode, role: "producer" });
console.log("ready");
const stdin = Bun.stdin.stream().getReader();
await stdin.read(); // "go" (or end of input: the parent is gone, and the timeout ends us)

let fullRetries = 0;
const cpu0 = process.cpuUsage();
const startMs = wallMs();
for (let seq = 0; seq < count; seq++) {
  let m = ch.tryAlloc(ByteVector, MESSAGE_SIZE);
  for (let spins = 1; m === null; spins++) {
    if (spins > SPINS) Bun.sleepSync(0);
    if ((++fullRetries & 0xfff) === 0) expired();
    m = ch.tryAlloc(ByteVector, MESSAGE_SIZE);
  }
  writeStamp(m, id, seq);
  ch.send(m);
}
const endMs = wallMs();
const cpu = process.cpuUsage(cpu0);
ch.close();
console.log(JSON.stringify({ id, sent: count, startMs, endMs, cpuMs: (cpu.user + cpu.system) / 1000, fullRetries }));
process.exit(0); // the stdin reader would keep us alive
