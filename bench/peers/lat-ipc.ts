// Bun IPC ping-pong: the pinger Bun.spawn()s this file again as its child with `ipc` (JSON
// serialization); the child echoes every message with process.send(). Messages are the sequence
// numbers. Usage: bun lat-ipc.ts ROUNDS WARMUP TIMEOUT_MS [CHILD_CPU] (prints a LatencyReport as
// JSON; with CHILD_CPU the child runs under `taskset -c CHILD_CPU`, else it inherits our CPUs).
// LAT_GAP_MS=1: 1 ms between round trips.
import { giveUpAfter, Samples } from "./lat-common.ts";

if (process.argv[2] === "echo") {
  process.on("message", (m) => process.send!(m));
  process.on("disconnect", () => process.exit(0));
} else {
  const [rounds, warmup, timeoutMs] = process.argv.slice(2, 5).map(Number) as [number, number, number];
  const childCpu = process.argv[5];
  const gapMs = Number(process.env.LAT_GAP_MS ?? 0);
  const total = rounds + warmup;
  giveUpAfter(timeoutMs, "bun-ipc ping");
  const samples = new Samples(rounds, warmup);
  const done = Promise.withResolvers<void>();
  let seq = 0;
  let t0 = 0;
  const child = Bun.spawn({
    cmd: [...(childCpu ? ["taskset", "-c", childCpu] : []), process.execPath, import.meta.path, "echo"],
    serialization: "json",
    stdio: ["ignore", "inherit", "inherit"],
    timeout: timeoutMs,
    killSignal: "SIGKILL",
    ipc(message) {
      const t1 = Bun.nanoseconds();
      if (message !== seq) {
        samples.fail(`round ${seq}: expected ${seq}, got ${JSON.stringify(message)}`);
        return done.resolve();
      }
      samples.add(seq, t1 - t0);
      if (++seq === total) return done.resolve();
      if (gapMs > 0) return void setTimeout(ping, gapMs);
      ping();
    },
  });
  function ping(): void {
    t0 = Bun.nanoseconds();
    child.send(seq);
  }
  ping();
  await done.promise;
  child.disconnect();
  await child.exited;
  console.log(JSON.stringify(samples.report()));
  process.exit(samples.errors ? 1 : 0);
}
