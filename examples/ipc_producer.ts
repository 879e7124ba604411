// The seed tutorial's IPC producer: 1000 FloatVectors of 100 simulated sensor readings, written
// in place in the channel. Run beside examples/ipc_consumer.ts, in either order:
//   bun examples/ipc_producer.ts [channel-uri] [--interval-ms 10]
// Over the network, only the URI changes: bun examples/ipc_producer.ts tcp://HOST:9000
import { parseArgs } from "node:util";
import { ChannelMode, createChannel, FloatVector } from "../src/index.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { "interval-ms": { type: "string", default: "10" }, count: { type: "string", default: "1000" } },
});
const uri = positionals[0] ?? "ipc://sensor_data";
const intervalMs = Number(values["interval-ms"]);
const count = Number(values.count);

const channel = createChannel(uri, 4 * 1024 * 1024, ChannelMode.SPSC);
console.log("Producer started, sending sensor data...");

for (let i = 0; i < count; ++i) {
  const data = new FloatVector(channel, 100);
  // Simulate sensor readings
  for (let j = 0; j < 100; ++j) data[j] = Math.sin(i * 0.1) * Math.cos(j * 0.05);
  channel.send(data);
  if (intervalMs > 0) await Bun.sleep(intervalMs);
}

// Over tcp:// or unix:// the messages must reach the consumer before this process ends: flush()
// waits until it acknowledged them. (Over ipc:// they wait in shared memory for a consumer that may
// start later, as in the seed.)
if (!uri.startsWith("ipc://")) await channel.flush();
console.log("Producer finished");
channel.close();
