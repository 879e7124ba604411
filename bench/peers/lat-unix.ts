// Unix domain socket ping-pong between two Bun processes: the echo side listens on PATH and writes
// back every byte it reads; the pinger connects, writes the sequence number (u32 LE) and waits for
// the same 4 bytes back (a reply may in principle arrive in pieces, so bytes are accumulated).
// Usage: bun lat-unix.ts echo PATH TIMEOUT_MS | bun lat-unix.ts ping PATH ROUNDS WARMUP TIMEOUT_MS
import { giveUpAfter, Samples } from "./lat-common.ts";

const [role, path] = process.argv.slice(2, 4) as [string, string];

if (role === "echo") {
  giveUpAfter(Number(process.argv[4]), "unix echo");
  const server: { stop(closeActive?: boolean): void } = Bun.listen({
    unix: path,
    socket: {
      data: (socket, chunk) => void socket.write(chunk),
      close: (): void => (server.stop(true), process.exit(0)),
    },
  });
  console.log("ready");
} else {
  const [rounds, warmup, timeoutMs] = process.argv.slice(4, 7).map(Number) as [number, number, number];
  const total = rounds + warmup;
  giveUpAfter(timeoutMs, "unix ping");
  const samples = new Samples(rounds, warmup);
  const done = Promise.withResolvers<void>();
  const out = new DataView(new ArrayBuffer(4));
  const reply = new Uint8Array(4);
  let have = 0;
  let seq = 0;
  let t0 = 0;
  const socket = await Bun.connect({
    unix: path,
    socket: {
      data(socket, chunk) {
        const t1 = Bun.nanoseconds();
        reply.set(chunk.subarray(0, 4 - have), have);
        have += chunk.length;
        if (have < 4) return;
        const got = reply[0]! | (reply[1]! << 8) | (reply[2]! << 16) | (reply[3]! << 24);
        if (have !== 4 || got !== seq) {
          samples.fail(`round ${seq}: expected ${seq}, got ${got} (${have} bytes)`);
          return done.resolve();
        }
        samples.add(seq, t1 - t0);
        have = 0;
        if (++seq === total) return done.resolve();
        t0 = Bun.nanoseconds();
        write(socket);
      },
      close: () => done.resolve(),
    },
  });
  function write(s: typeof socket): void {
    out.setUint32(0, seq, true);
    if (s.write(out) !== 4) samples.fail(`round ${seq}: short write`);
  }
  t0 = Bun.nanoseconds();
  write(socket);
  await done.promise;
  socket.end();
  if (seq !== total && !samples.errors) samples.fail(`the echo side closed after ${seq}/${total} rounds`);
  console.log(JSON.stringify(samples.report()));
  process.exit(samples.errors ? 1 : 0);
}
