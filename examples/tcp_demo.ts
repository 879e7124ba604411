// The seed's producer and consumer over tcp://, unchanged but for the URI: the consumer listens on
// a loopback port, the producer connects to it, both as their own processes. You should see
// "Processed 0 messages ..." every 100 messages, then "received 1000/1000 in order, every value
// checked". Exits non-zero if anything failed.
//   bun examples/tcp_demo.ts        (on two machines: bun examples/ipc_consumer.ts tcp://:9000
//                                    and bun examples/ipc_producer.ts tcp://CONSUMER-HOST:9000)
const here = import.meta.dir;
const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
const port = probe.port; // a free port
probe.stop(true);
const run = (script: string, ...args: string[]) =>
  Bun.spawn([process.execPath, `${here}/${script}`, ...args], { stdout: "inherit", stderr: "inherit", timeout: 60_000 });

const consumer = run("ipc_consumer.ts", `tcp://127.0.0.1:${port}`, "--listen");
const producer = run("ipc_producer.ts", `tcp://127.0.0.1:${port}`, "--interval-ms", "1");
const [consumerCode, producerCode] = await Promise.all([consumer.exited, producer.exited]);
if (consumerCode !== 0 || producerCode !== 0) {
  console.error(`tcp demo failed: consumer exited ${consumerCode}, producer exited ${producerCode}`);
  process.exit(1);
}
console.log(`tcp demo: producer and consumer ran as two processes over tcp://127.0.0.1:${port}`);
