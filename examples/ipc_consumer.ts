// The seed tutorial's IPC consumer: receives 1000 FloatVectors, prints a running average every
// 100, and checks every value against what the producer computes. Exits non-zero on a mismatch.
//   bun examples/ipc_consumer.ts [channel-uri] [--count 1000] [--listen]
// Over the network, only the URI changes: bun examples/ipc_consumer.ts tcp://:9000
import { parseArgs } from "node:util";
import { ChannelMode, createChannel, FloatVector } from "../src/index.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { count: { type: "string", default: "1000" }, listen: { type: "boolean", default: false } },
});
const uri = positionals[0] ?? "ipc://sensor_data";
const total = Number(values.count);

// Connect to the IPC channel (created by whichever of producer and consumer starts first)
// (--listen: a network consumer that listens on the URI's host, e.g. tcp://127.0.0.1:9000; the
// seed's server form tcp://:9000 listens on every interface without it)
const channel = values.listen
  ? createChannel(uri, { bufferSize: 4 * 1024 * 1024, mode: ChannelMode.SPSC, listen: true })
  : createChannel(uri, 4 * 1024 * 1024, ChannelMode.SPSC);
console.log("Consumer started, processing sensor data...");

let count = 0;
let mismatches = 0;
const expected = new Float32Array(100);
while (count < total) {
  // the seed polls receive() in a loop, burning a core while it waits; recv() parks instead
  const data = await channel.recv(FloatVector, { timeout: 30_000 });
  if (!data) {
    console.error(`no sensor data for 30 s after ${count} messages`);
    break;
  }
  {
    // Process the data
    const sum = data.reduce((a, b) => a + b, 0);
    const avg = sum / data.length;
    for (let j = 0; j < 100; ++j) expected[j] = Math.sin(count * 0.1) * Math.cos(j * 0.05);
    if (data.length !== 100 || data.some((v, j) => v !== expected[j])) mismatches++;
    if (count % 100 === 0) console.log(`Processed ${count} messages, latest avg: ${avg.toPrecision(6)}`);
    count++;
  }
}

channel.close();
console.log("Consumer finished");
console.log(`received ${count}/${total} in order, ${mismatches === 0 ? "every value checked" : `${mismatches} messages wrong`}`);
process.exit(mismatches === 0 ? 0 : 1);
