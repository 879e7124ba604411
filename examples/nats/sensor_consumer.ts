// "Machine B": the seed tutorial's consumer, reading a NATS subject: a running average every 100
// messages, every value checked against what the producer computes.
//   bun examples/nats/sensor_consumer.ts nats://HOST:4222/sensors [--count 1000]
import { parseArgs } from "node:util";
import { createChannel, FloatVector } from "../../src/index.ts";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { count: { type: "string", default: "1000" } } });
const uri = positionals[0] ?? "nats://127.0.0.1:4222/sensors";
const total = Number(values.count);
const channel = createChannel(uri, { role: "consumer" });
await channel.ready({ timeout: 10_000 }); // subscribed: from now on no message is missed (core NATS keeps none for late subscribers)
console.log("Consumer started, processing sensor data...");

let count = 0;
let mismatches = 0;
const expected = new Float32Array(100);
while (count < total) {
  const data = await channel.recv(FloatVector, { timeout: 30_000 }); // a view of the local receive ring
  if (!data) break;
  const avg = data.reduce((a, b) => a + b, 0) / data.length;
  for (let j = 0; j < 100; ++j) expected[j] = Math.sin(count * 0.1) * Math.cos(j * 0.05);
  if (data.length !== 100 || data.some((v, j) => v !== expected[j])) mismatches++;
  if (count % 100 === 0) console.log(`Processed ${count} messages, latest avg: ${avg.toPrecision(6)}`);
  count++;
}
channel.close();
console.log(`received ${count}/${total} in order over NATS, ${mismatches === 0 ? "every value checked" : `${mismatches} messages wrong`}`);
process.exit(count === total && mismatches === 0 ? 0 : 1);
