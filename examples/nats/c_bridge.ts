// A C program on machine A reaches consumers on other machines: the seed's C producer
// (examples/c/producer.c) writes 1000 FloatVectors into a local ipc:// channel, `psyne bridge`
// moves them to a durable NATS subject, and a consumer anywhere reads them with every value
// checked. You should see "1000/1000 FloatVectors from C over ipc:// -> bridge -> nats://".
//   bun examples/nats/c_bridge.ts            (NATS_URL=nats://host:4222 to use your server)
// By hand, in three terminals:
//   examples/c/bin/producer sensor_data
//   bunx psyne bridge ipc://sensor_data nats://127.0.0.1:4222/sensors --to-durable sensors
//   bun examples/nats/sensor_consumer.ts nats://127.0.0.1:4222/sensors
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createChannel, FloatVector } from "../../src/index.ts";
import { natsServer } from "./server.ts";

const root = join(import.meta.dir, "..", "..");
const bin = mkdtempSync(join(tmpdir(), "psyne-c-example-"));
const built = Bun.spawnSync(["sh", join(root, "examples", "c", "build.sh"), bin], { stderr: "pipe" });
if (built.exitCode !== 0) throw new Error(`building the C producer failed: ${built.stderr}`);

const server = await natsServer();
const name = `sensor_data_bridge_${process.pid}`;
const subject = `${server.url}/sensors.c.${process.pid}`;
// machine B: a durable consumer, so nothing is missed whenever it starts
const consumer = createChannel(subject, { durable: "sensors", role: "consumer" });
await consumer.ready({ timeout: 20_000 });
// machine A: the bridge, then the C producer
const bridge = Bun.spawn([process.execPath, join(root, "src", "cli.ts"), "bridge", `ipc://${name}`, subject, "--to-durable", "c-producer"], {
  stdout: "inherit",
  stderr: "inherit",
  timeout: 60_000,
});
const producer = Bun.spawn([join(bin, "producer"), name, "1000"], { stdout: "inherit", stderr: "inherit", timeout: 60_000 });

let count = 0;
let mismatches = 0;
const expected = new Float32Array(100);
while (count < 1000) {
  const data = await consumer.recv(FloatVector, { timeout: 30_000 });
  if (!data) break;
  for (let j = 0; j < 100; ++j) expected[j] = Math.sin(count * 0.1) * Math.cos(j * 0.05);
  if (data.length !== 100 || data.some((v, j) => v !== expected[j])) mismatches++;
  count++;
}
const producerCode = await producer.exited;
bridge.kill("SIGINT"); // Ctrl-C: the bridge stops cleanly
const bridgeCode = await bridge.exited;
consumer.close();
server.stop();
rmSync(bin, { recursive: true, force: true });
console.log(`${count}/1000 FloatVectors from C over ipc:// -> bridge -> nats://, ${mismatches === 0 ? "every value checked" : `${mismatches} wrong`}`);
process.exit(count === 1000 && mismatches === 0 && producerCode === 0 && bridgeCode === 0 ? 0 : 1);
