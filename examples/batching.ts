// The seed's "Minimize context switches": pack many small records into one message. A producer
// process (this script, with "producer") sends the same 10,050 DataPoint records twice: first one
// message per record (a defineMessage struct), then in batches of 100 records per ByteVector, laid
// out like the seed's C struct { double timestamp; uint32_t sensor_id; float value; } (16 bytes)
// and written straight into the channel (the seed's memcpy is not needed). This script receives
// and checks every record of both. You should see the message counts and times of each, then
// "batching: 10050/10050 records arrived in 101 messages instead of 10050, every record checked".
//   bun examples/batching.ts
import { ByteVector, ChannelMode, createChannel, defineMessage } from "../src/index.ts";

const RECORDS = 10_050; // the last batch is a partial one (50 records)
const BATCH = 100;
const DataPoint = defineMessage("DataPoint", { timestamp: "f64", sensor_id: "u32", value: "f32" }); // 16 bytes
const RECORD_BYTES = 16; // the same layout, by hand, for the batches: f64 @0, u32 @8, f32 @12

// record i, so both sides can compute it
const timestampOf = (i: number) => 1_700_000_000 + i / 1000;
const sensorOf = (i: number) => i % 8;
const valueOf = (i: number) => Math.fround(Math.sin(i));

const [role, uriArg] = process.argv.slice(2);

if (role === "producer") {
  const channel = createChannel(uriArg!, { open: "attach", role: "producer" });
  // 1. one message per record
  for (let i = 0; i < RECORDS; i++) {
    const point = channel.tryAlloc(DataPoint) ?? (await DataPoint.allocAsync(channel, { timeout: 10_000 }));
    point.timestamp = timestampOf(i);
    point.sensor_id = sensorOf(i);
    point.value = valueOf(i);
    channel.send(point);
  }
  // 2. batches: up to 100 records per message, written in place
  for (let first = 0; first < RECORDS; first += BATCH) {
    const count = Math.min(BATCH, RECORDS - first);
    const msg = channel.tryAlloc(ByteVector, count * RECORD_BYTES) ?? (await ByteVector.allocAsync(channel, count * RECORD_BYTES, { timeout: 10_000 }));
    const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
    for (let k = 0; k < count; k++) {
      const i = first + k;
      view.setFloat64(k * RECORD_BYTES, timestampOf(i), true);
      view.setUint32(k * RECORD_BYTES + 8, sensorOf(i), true);
      view.setFloat32(k * RECORD_BYTES + 12, valueOf(i), true);
    }
    channel.send(msg);
  }
  channel.close();
} else {
  const uri = `ipc://batching-${process.pid}`;
  const channel = createChannel(uri, { bufferSize: 1 << 20, mode: ChannelMode.SPSC, role: "consumer" });
  const producer = Bun.spawn([process.execPath, import.meta.path, "producer", uri], { stdout: "inherit", stderr: "inherit", timeout: 30_000 });
  const check = (i: number, timestamp: number, sensor: number, value: number) =>
    timestamp === timestampOf(i) && sensor === sensorOf(i) && value === valueOf(i);

  // 1. one record per message
  let records = 0;
  let messages = 0;
  let good = 0;
  let start = 0;
  while (records < RECORDS) {
    const point = await channel.recv(DataPoint, { timeout: 10_000 });
    if (!point) break;
    if (messages++ === 0) start = performance.now();
    if (check(records, point.timestamp, point.sensor_id, point.value)) good++;
    records++;
  }
  const single = { records, messages, good, ms: performance.now() - start };

  // 2. batches
  records = messages = good = 0;
  while (records < RECORDS) {
    const batch = await channel.recv(ByteVector, { timeout: 10_000 });
    if (!batch) break;
    if (messages++ === 0) start = performance.now();
    const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
    for (let at = 0; at < batch.byteLength; at += RECORD_BYTES, records++)
      if (check(records, view.getFloat64(at, true), view.getUint32(at + 8, true), view.getFloat32(at + 12, true))) good++;
    batch.release(); // done with it: its space is free again (the next recv() would do it too)
  }
  const batched = { records, messages, good, ms: performance.now() - start };
  const code = await producer.exited;
  const total = channel.stats().messagesReceived;
  channel.close();

  console.log(`one record per message:   ${single.messages} messages for ${single.records} records, received in ${single.ms.toFixed(1)} ms`);
  console.log(`100 records per message:  ${batched.messages} messages for ${batched.records} records, received in ${batched.ms.toFixed(1)} ms`);
  console.log(`channel.stats(): ${total} messages received in all`);
  const ok =
    code === 0 &&
    single.good === RECORDS &&
    batched.good === RECORDS &&
    batched.records === RECORDS &&
    batched.messages === Math.ceil(RECORDS / BATCH);
  console.log(
    `batching: ${batched.good}/${RECORDS} records arrived in ${batched.messages} messages instead of ${single.messages}, ` +
      `${single.good === RECORDS && batched.good === RECORDS ? "every record checked" : `${2 * RECORDS - single.good - batched.good} records WRONG`}`,
  );
  process.exit(ok ? 0 : 1);
}
