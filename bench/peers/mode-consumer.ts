// A consumer of bench/modes.ts: takes the consumer role (a BROADCAST subscriber subscribes then),
// prints "ready", and busy-polls receive() (null when empty: spin, then yield, then sleep 1 ms),
// checking every stamped message (stamp.ts).
//   ordered: expects all PRODUCERS x PER_PRODUCER messages, each producer's in order (SPSC, MPSC,
//            BROADCAST), and stops after the last one.
//   any:     does not know how many it gets (SPMC, MPMC): marks each (producer, seq) in a bitmap,
//            and stops when stdin is closed and the channel is empty; the parent merges the bitmaps.
// Usage: bun mode-consumer.ts URI MODE BUFFER_SIZE PRODUCERS PER_PRODUCER ordered|any TIMEOUT_MS
import { ByteVector, type ChannelMode, createChannel } from "../../src/index.ts";
import { deadline } from "./pattern.ts";
import { producerOf, SPINS, seqOf, wallMs } from "./stamp.ts";

const [uri, mode] = process.argv.slice(2, 4) as [string, string];
const [bufferSize, producers, perProducer] = process.argv.slice(4, 7).map(Number) as [number, number, number];
const ordered = process.argv[7] === "ordered";
const timeoutMs = Number(process.argv[8]);
const expired = deadline(timeoutMs, `consumer ${process.pid}`);
const ch = createChannel(uri, { bufferSize, mode: mode as ChannelMode, role: "consumer" });

let stdinClosed = false;
if (!ordered)
  (async () => {
    for await (const _ of Bun.stdin.stream());
    stdinClosed = true;
  })();
console.log("ready");

const IDLE_SPINS = 4096; // empty polls (spun or yielded) before an idle consumer sleeps 1 ms per poll
const next = new Uint32Array(producers); // ordered: the seq expected next from each producer
const seen = Array.from({ length: producers }, () => new Uint8Array(Math.ceil(perProducer / 8))); // any
const expected = producers * perProducer;
let [received, errors, duplicates] = [0, 0, 0];
let firstError: string | undefined;
let [firstMs, lastMs] = [0, 0];

const fail = (what: string) => {
  errors++;
  firstError ??= `message ${received}: ${what}`;
};

for (let spins = 0; ordered ? received < expected : !(stdinClosed && spins > 0); ) {
  const m = ch.receive(ByteVector); // valid until the next receive()
  if (m === null) {
    if (++spins === 1) lastMs = wallMs(); // the end of a burst: maybe the last message
    if ((spins & 0x3ff) === 0) expired();
    if (spins > IDLE_SPINS) await Bun.sleep(1); // also lets the stdin reader run
    else if (spins > SPINS) Bun.sleepSync(0);
    continue;
  }
  spins = 0;
  if (received++ === 0) firstMs = wallMs();
  const producer = producerOf(m);
  const seq = seqOf(m);
  if (producer < 0 || producer >= producers || seq >= perProducer) fail(`bad stamp ${Array.from(m.subarray(0, 8)).join(",")}`);
  else if (ordered) {
    if (seq !== next[producer]) fail(`producer ${producer}: seq ${seq}, expected ${next[producer]}`);
    next[producer] = seq + 1;
  } else {
    const bits = seen[producer]!;
    if (bits[seq >>> 3]! & (1 << (seq & 7))) duplicates++;
    bits[seq >>> 3]! |= 1 << (seq & 7);
  }
}
if (ordered) lastMs = wallMs();
ch.close();
const bitmaps = ordered ? undefined : seen.map((b) => Buffer.from(b.buffer).toString("base64"));
console.log(JSON.stringify({ received, errors, duplicates, firstError, firstMs, lastMs, bitmaps }));
process.exit(0); // the stdin reader would keep us alive
