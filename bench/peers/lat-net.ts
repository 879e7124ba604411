// Ping-pong over a network channel (psyne tcp:// or unix://) or a raw Bun TCP socket: the echo side
// listens and sends back every message; the pinger connects, sends a 64-byte message stamped with
// its sequence number and waits for it back (one-way = round trip / 2).
// Usage: bun lat-net.ts echo URI TIMEOUT_MS         (prints "listening ADDRESS")
//        bun lat-net.ts ping URI ROUNDS WARMUP TIMEOUT_MS
//        bun lat-net.ts raw-echo TIMEOUT_MS        (TCP on 127.0.0.1, prints "listening PORT")
//        bun lat-net.ts raw-ping PORT ROUNDS WARMUP TIMEOUT_MS
import { ByteVector, ChannelMode, createChannel } from "../../src/index.ts";
import { giveUpAfter, Samples } from "./lat-common.ts";

const SIZE = 64;
const role = process.argv[2]!;

if (role === "echo") {
  const [uri, timeoutMs] = [process.argv[3]!, Number(process.argv[4])];
  giveUpAfter(timeoutMs, "net echo");
  const ch = createChannel(uri, { mode: ChannelMode.SPSC, bufferSize: 1 << 20, listen: true });
  console.log(`listening ${uri.startsWith("unix:") ? uri : `tcp://${ch.stats().listening}`}`);
  for (;;) {
    const m = await ch.recv(ByteVector, { timeout: timeoutMs });
    if (m === null) break;
    const last = m[4] === 1; // the pinger's last round
    const reply = ch.tryAlloc(ByteVector, SIZE) ?? (await ByteVector.allocAsync(ch, SIZE));
    reply.set(m);
    m.release();
    ch.send(reply);
    if (last) break;
  }
  await ch.flush({ timeout: timeoutMs });
  ch.close();
} else if (role === "ping") {
  const [uri, rounds, warmup, timeoutMs] = [process.argv[3]!, ...process.argv.slice(4, 7).map(Number)] as [string, number, number, number];
  giveUpAfter(timeoutMs, "net ping");
  const ch = createChannel(uri, { mode: ChannelMode.SPSC, bufferSize: 1 << 20 });
  await ch.ready({ timeout: timeoutMs });
  const samples = new Samples(rounds, warmup);
  const total = rounds + warmup;
  for (let seq = 0; seq < total; seq++) {
    const m = ch.tryAlloc(ByteVector, SIZE)!;
    new DataView(m.buffer, m.byteOffset, 4).setUint32(0, seq, true);
    m[4] = seq === total - 1 ? 1 : 0;
    const t0 = Bun.nanoseconds();
    ch.send(m);
    const back = await ch.recv(ByteVector, { timeout: timeoutMs });
    const t1 = Bun.nanoseconds();
    if (back === null || new DataView(back.buffer, back.byteOffset, 4).getUint32(0, true) !== seq) samples.fail(`round ${seq}: wrong or no reply`);
    back?.release();
    samples.add(seq, t1 - t0);
  }
  await ch.flush({ timeout: timeoutMs });
  ch.close();
  console.log(JSON.stringify(samples.report()));
  process.exit(samples.errors ? 1 : 0);
} else if (role === "raw-echo") {
  giveUpAfter(Number(process.argv[3]), "raw echo");
  const server: { port: number; stop(closeActive?: boolean): void } = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: { data: (socket, chunk) => void socket.write(chunk), close: (): void => (server.stop(true), process.exit(0)) },
  });
  console.log(`listening ${server.port}`);
} else {
  const [port, rounds, warmup, timeoutMs] = process.argv.slice(3, 7).map(Number) as [number, number, number, number];
  giveUpAfter(timeoutMs, "raw ping");
  const samples = new Samples(rounds, warmup);
  const total = rounds + warmup;
  const done = Promise.withResolvers<void>();
  const out = new Uint8Array(SIZE);
  const view = new DataView(out.buffer);
  let have = 0;
  let seq = 0;
  let t0 = 0;
  const socket = await Bun.connect({
    hostname: "127.0.0.1",
    port,
    socket: {
      data(s, chunk) {
        have += chunk.length;
        if (have < SIZE) return;
        const t1 = Bun.nanoseconds();
        if (have !== SIZE || new DataView(chunk.buffer, chunk.byteOffset + chunk.length - SIZE, 4).getUint32(0, true) !== seq) samples.fail(`round ${seq}: wrong reply`);
        samples.add(seq, t1 - t0);
        have = 0;
        if (++seq === total) return done.resolve();
        view.setUint32(0, seq, true);
        t0 = Bun.nanoseconds();
        s.write(out);
      },
      close: () => done.resolve(),
    },
  });
  view.setUint32(0, 0, true);
  t0 = Bun.nanoseconds();
  socket.write(out);
  await done.promise;
  socket.end();
  console.log(JSON.stringify(samples.report()));
  process.exit(samples.errors ? 1 : 0);
}
