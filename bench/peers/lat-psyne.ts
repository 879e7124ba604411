// psyne ping-pong over two SPSC channels, NAME-ping and NAME-pong (64 KiB each): the pinger sends
// Int32Vector [seq] on ping and waits for the same seq on pong; the ponger echoes. How a side waits:
//   poll: busy-polls receive() (never blocks)      recv: await recv() (parked; woken by a doorbell,
//   or with PSYNE_WAKE=thread by a waiter thread)  sync: receiveSync() (blocks the thread in the kernel)
// LAT_GAP_MS=1: the pinger waits 1 ms between round trips (recv only), so the ponger is parked when
// each ping comes, as a service is between requests.
// Usage: bun lat-psyne.ts ping|pong NAME poll|recv|sync ROUNDS WARMUP TIMEOUT_MS
//   (the pinger prints a LatencyReport as JSON)
//        bun lat-psyne.ts idle NAME TIMEOUT_MS: parks in await recv() on NAME-ping until one message
//   comes; prints {cpuMs, wallMs, switches, value} measured over the wait (all threads)
//        bun lat-psyne.ts sleep MS: the same for a Bun process in await Bun.sleep(MS), the baseline
import { readdirSync, readFileSync } from "node:fs";
import { ChannelMode, createChannel, Int32Vector } from "../../src/index.ts";
import { giveUpAfter, Samples } from "./lat-common.ts";
import { deadline } from "./pattern.ts";

const [role, name] = process.argv.slice(2, 4) as [string, string];
const open = (suffix: string, as: "producer" | "consumer") =>
  createChannel(`ipc://${name}-${suffix}`, { bufferSize: 65536, mode: ChannelMode.SPSC, role: as });

/** Voluntary context switches of all our threads: how often one went to sleep (and woke). */
const switches = () =>
  readdirSync("/proc/self/task").reduce((n, tid) => {
    const status = readFileSync(`/proc/self/task/${tid}/status`, "utf8");
    return n + Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(status)?.[1] ?? 0);
  }, 0);

if (role === "idle" || role === "sleep") {
  const ch = role === "idle" ? open("ping", "consumer") : null;
  console.log("ready");
  const [cpu0, s0, t0] = [process.cpuUsage(), switches(), performance.now()];
  const m = ch ? await ch.recv(Int32Vector, { timeout: Number(process.argv[4]) }) : (await Bun.sleep(Number(process.argv[3])), null);
  const [cpu, s1, wallMs] = [process.cpuUsage(cpu0), switches(), performance.now() - t0];
  const value = m?.[0] ?? null;
  ch?.close();
  console.log(JSON.stringify({ cpuMs: (cpu.user + cpu.system) / 1000, wallMs, switches: s1 - s0, value }));
  process.exit(ch && value === null ? 1 : 0);
}

const how = process.argv[4] as "poll" | "recv" | "sync";
const [rounds, warmup, timeoutMs] = process.argv.slice(5, 8).map(Number) as [number, number, number];
const total = rounds + warmup;
const pinger = role === "ping";
const out = pinger ? open("ping", "producer") : open("pong", "producer");
const input = pinger ? open("pong", "consumer") : open("ping", "consumer");
const expired = deadline(timeoutMs, `psyne ${how} ${role}`);
giveUpAfter(timeoutMs, `psyne ${how} ${role}`); // for recv, whose loop lets timers run

function send(seq: number): void {
  const v = new Int32Vector(out, 1);
  v[0] = seq;
  out.send(v);
}

/** The next message without the event loop (poll, sync); null only after timeoutMs. */
function next(): Int32Vector | null {
  if (how === "sync") return input.receiveSync(Int32Vector, timeoutMs);
  for (let spins = 1; ; spins++) {
    const m = input.receive(Int32Vector);
    if (m !== null) return m;
    if ((spins & 0xffff) === 0) expired();
  }
}

const samples = new Samples(rounds, warmup);
const check = (m: Int32Vector | null, seq: number): boolean => {
  if (m !== null && m.length === 1 && m[0] === seq) return true;
  samples.fail(`round ${seq}: expected [${seq}], got ${m === null ? "nothing (timeout)" : `[${Array.from(m).join(",")}]`}`);
  return false;
};

// the loops are written twice so that poll and sync pay for no await
const gapMs = Number(process.env.LAT_GAP_MS ?? 0);
if (pinger && how === "recv") {
  for (let seq = 0; seq < total; seq++) {
    if (gapMs > 0) await Bun.sleep(gapMs);
    const t0 = Bun.nanoseconds();
    send(seq);
    const m = await input.recv(Int32Vector, { timeout: timeoutMs });
    const t1 = Bun.nanoseconds();
    if (!check(m, seq)) break;
    samples.add(seq, t1 - t0);
  }
} else if (pinger) {
  for (let seq = 0; seq < total; seq++) {
    const t0 = Bun.nanoseconds();
    send(seq);
    const m = next();
    const t1 = Bun.nanoseconds();
    if (!check(m, seq)) break;
    samples.add(seq, t1 - t0);
  }
} else {
  for (let seq = 0; seq < total; seq++) {
    const m = how === "recv" ? await input.recv(Int32Vector, { timeout: timeoutMs }) : next();
    if (!check(m, seq)) break;
    send(seq);
  }
}
out.close();
input.close();
if (pinger) console.log(JSON.stringify(samples.report()));
else if (samples.errors) console.error(`psyne ${how} pong: ${samples.report().firstError}`);
process.exit(samples.errors ? 1 : 0);
