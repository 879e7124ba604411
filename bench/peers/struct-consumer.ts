// Receives COUNT 64-byte structs (bench/peers/struct.ts), busy-polling, and checks every field of
// every message, one of four ways:
//   reader: Tick.reader(channel): next(), fields read in place, no object per message
//   send:   receive(Tick): one message object each
//   batch:  drainBytes(read), a callback per message, fields read through a DataView
//   block:  receiveBlock(): up to 256 messages per call, a loop over their offsets
// Prints a Report (pattern.ts) as JSON, timed from the first message to the last.
// Usage: bun struct-consumer.ts reader|send|batch|block NAME COUNT TIMEOUT_MS BUFFER_BYTES
import { ChannelMode, createChannel } from "../../src/index.ts";
import { deadline, type Report } from "./pattern.ts";
import { check, checkAt, Tick } from "./struct.ts";

const [how, name] = process.argv.slice(2, 4) as [string, string];
const [count, timeoutMs, bufferSize] = process.argv.slice(4, 7).map(Number) as [number, number, number];
const expired = deadline(timeoutMs, `struct consumer (${how})`);
const ch = createChannel(`ipc://${name}`, { bufferSize, mode: ChannelMode.SPSC, role: "consumer" });

let received = 0;
let errors = 0;
let firstError: string | undefined;
let emptyPolls = 0;
let t0 = 0;
const bad = (what: string) => {
  errors++;
  firstError ??= `message ${received}: ${what}`;
};
const idle = () => {
  if ((++emptyPolls & 0xffff) === 0) expired();
};

if (how === "reader") {
  const r = Tick.reader(ch);
  while (received < count) {
    if (!r.next()) {
      idle();
      continue;
    }
    if (received === 0) t0 = performance.now();
    if (!check(r, received)) bad(`seq ${r.seq}, a ${r.a}`);
    received++;
  }
  r.release();
} else if (how === "send") {
  while (received < count) {
    const m = ch.receive(Tick); // valid until the next receive()
    if (m === null) {
      idle();
      continue;
    }
    if (received === 0) t0 = performance.now();
    if (!check(m, received)) bad(`seq ${m.seq}, a ${m.a}`);
    received++;
  }
} else if (how === "batch") {
  let view: DataView | null = null;
  const read = (bytes: Uint8Array, offset: number, length: number) => {
    if (length !== 64 || !checkAt((view ??= new DataView(bytes.buffer, bytes.byteOffset)), offset, received)) bad(`length ${length}`);
    received++;
  };
  while (received < count) {
    if (received === 0) t0 = performance.now(); // the drain that gets the first messages starts the clock
    if (ch.drainBytes(read, count - received) === 0) idle();
  }
} else {
  while (received < count) {
    if (received === 0) t0 = performance.now();
    const block = ch.receiveBlock();
    const n = block.count;
    if (n === 0) {
      idle();
      continue;
    }
    const view = block.view;
    for (let i = 0; i < n; i++) {
      if (block.length(i) !== 64 || !checkAt(view, block.offset(i), received)) bad(`length ${block.length(i)}`);
      received++;
    }
  }
  ch.receiveBlock(); // releases the last block
}
const elapsedMs = performance.now() - t0;
ch.close();
const report: Report = { messages: received, errors, firstError, elapsedMs, note: `${emptyPolls} empty polls` };
console.log(JSON.stringify(report));
