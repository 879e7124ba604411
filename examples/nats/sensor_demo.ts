// Two "machines" through NATS: the seed's sensor consumer (machine B) subscribes, then the producer
// (machine A) publishes 1000 FloatVectors; both only know the server's URL. You should see
// "received 1000/1000 in order over NATS, every value checked".
//   bun examples/nats/sensor_demo.ts            (NATS_URL=nats://host:4222 to use your server)
import { natsServer } from "./server.ts";

const server = await natsServer();
const uri = `${server.url}/sensors.demo.${process.pid}`;
const run = (script: string, ...args: string[]) =>
  Bun.spawn([process.execPath, `${import.meta.dir}/${script}`, uri, ...args], { stdout: "pipe", stderr: "inherit", timeout: 60_000 });

const consumer = run("sensor_consumer.ts");
const reader = consumer.stdout.getReader();
let out = "";
while (!out.includes("Consumer started")) {
  const { value, done } = await reader.read();
  if (done) break;
  out += new TextDecoder().decode(value);
}
process.stdout.write(out);
const producer = run("sensor_producer.ts", "--interval-ms", "1");
const producerOut = new Response(producer.stdout).text();
for (;;) {
  const { value, done } = await reader.read();
  if (done) break;
  process.stdout.write(value);
}
const [consumerCode, producerCode] = await Promise.all([consumer.exited, producer.exited]);
process.stdout.write(await producerOut);
server.stop();
if (consumerCode !== 0 || producerCode !== 0) {
  console.error(`demo failed: consumer exited ${consumerCode}, producer exited ${producerCode}`);
  process.exit(1);
}
