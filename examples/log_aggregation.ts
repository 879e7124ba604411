// The seed's MPSC example: several processes write log entries into one channel; one aggregator
// reads them all. This script is the aggregator and spawns 3 writer processes (itself, with
// "writer ID"). You should see "aggregated 600/600 log lines from 3 processes, each in order".
//   bun examples/log_aggregation.ts
import { ByteVector, ChannelMode, createChannel } from "../src/index.ts";

const [role, id, uriArg] = process.argv.slice(2);
const PER_WRITER = 200;

if (role === "writer") {
  const logChannel = createChannel(uriArg!, 8 * 1024 * 1024, ChannelMode.MPSC);
  for (let i = 0; i < PER_WRITER; i++) {
    const message = new TextEncoder().encode(`[writer ${id}] ${new Date().toISOString()} event ${i}`);
    const logEntry = new ByteVector(logChannel, message.length); // space in the channel...
    logEntry.set(message); // ...written in place (the seed's memcpy)
    logChannel.send(logEntry);
  }
  await logChannel.flush({ timeout: 10_000 }); // the aggregator has taken every line: now leave
  logChannel.close();
} else {
  const uri = `ipc://logs-${process.pid}`;
  const logChannel = createChannel(uri, { bufferSize: 8 * 1024 * 1024, mode: ChannelMode.MPSC, role: "consumer" });
  const writers = [1, 2, 3].map((n) =>
    Bun.spawn([process.execPath, import.meta.path, "writer", String(n), uri], { stdout: "inherit", stderr: "inherit", timeout: 30_000 }),
  );
  const next = new Map<string | undefined, number>(); // per writer: the event number expected next
  let received = 0;
  let outOfOrder = 0;
  while (received < 3 * PER_WRITER) {
    const entry = await logChannel.recv(ByteVector, { timeout: 10_000 });
    if (!entry) break;
    const line = entry.text();
    const [, writer, event] = /^\[writer (\d+)\] \S+ event (\d+)$/.exec(line) ?? [];
    if (Number(event) !== (next.get(writer) ?? 0)) outOfOrder++;
    next.set(writer, Number(event) + 1);
    if (received % 150 === 0) console.log(line);
    received++;
  }
  const codes = await Promise.all(writers.map((w) => w.exited));
  logChannel.close();
  const ok = received === 3 * PER_WRITER && outOfOrder === 0 && codes.every((c) => c === 0);
  console.log(`aggregated ${received}/${3 * PER_WRITER} log lines from ${next.size} processes, ${outOfOrder === 0 ? "each in order" : `${outOfOrder} out of order`}`);
  process.exit(ok ? 0 : 1);
}
