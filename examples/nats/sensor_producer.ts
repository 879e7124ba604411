// "Machine A": the seed tutorial's producer, publishing to a NATS subject instead of shared memory.
// The only change from examples/ipc_producer.ts is the URI.
//   bun examples/nats/sensor_producer.ts nats://HOST:4222/sensors [--count 1000] [--interval-ms 10]
import { parseArgs } from "node:util";
import { ChannelMode, createChannel, FloatVector } from "../../src/index.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { "interval-ms": { type: "string", default: "10" }, count: { type: "string", default: "1000" } },
});
const uri = positionals[0] ?? "nats://127.0.0.1:4222/sensors";
const channel = createChannel(uri, 4 * 1024 * 1024, ChannelMode.SPSC);
await channel.ready({ timeout: 10_000 }); // connected to the server
console.log("Producer started, sending sensor data...");

for (let i = 0; i < Number(values.count); ++i) {
  const data = new FloatVector(channel, 100); // written in place in the local send ring
  for (let j = 0; j < 100; ++j) data[j] = Math.sin(i * 0.1) * Math.cos(j * 0.05);
  channel.send(data); // the pump publishes it: 400 bytes of little-endian f32, type in a header
  if (Number(values["interval-ms"]) > 0) await Bun.sleep(Number(values["interval-ms"]));
}
await channel.flush({ timeout: 10_000 }); // the server has every message
console.log("Producer finished");
channel.close();
