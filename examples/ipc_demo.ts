// The main demo: runs the seed's producer and consumer as two processes on one channel and
// prints what the consumer prints. You should see "Processed 0 messages ..." every 100 messages,
// then "received 1000/1000 in order, every value checked". Exits non-zero if anything failed.
//   bun examples/ipc_demo.ts   (or: npm run demo)
const here = import.meta.dir;
const uri = `ipc://sensor_data-demo-${process.pid}`;
const run = (script: string) =>
  Bun.spawn([process.execPath, `${here}/${script}`, uri], { stdout: "inherit", stderr: "inherit", timeout: 60_000 });

const consumer = run("ipc_consumer.ts");
const producer = run("ipc_producer.ts");
const [consumerCode, producerCode] = await Promise.all([consumer.exited, producer.exited]);
if (consumerCode !== 0 || producerCode !== 0) {
  console.error(`demo failed: consumer exited ${consumerCode}, producer exited ${producerCode}`);
  process.exit(1);
}
console.log("demo: producer and consumer ran as two processes on", uri);
