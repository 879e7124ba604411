// Throughput of every channel mode at 64-byte messages, in one run beside SPSC: SPSC 1->1; MPSC
// 1, 2, 4 producer processes -> 1 consumer; SPMC 1 -> 1, 2, 4 consumers; MPMC 2 -> 2; and the send
// rate of a BROADCAST producer with 1, 4 and 16 subscriber processes. Producers tryAlloc + send;
// consumers busy-poll receive() with back-off (peers: bench/peers/mode-*.ts). Every message is
// stamped with its producer and seq and checked: each producer's order where the mode promises it
// (SPSC, MPSC, BROADCAST: every subscriber gets every message), exactly once overall for SPMC/MPMC
// (each consumer reports a bitmap; this process merges them). Rates are messages over the time
// from the producers' start ("go", after every process is ready) to the last message received.
// BROADCAST uses a ring that holds the whole run, so the producer is never held back by a
// subscriber: its rate and CPU per send are the cost of publishing. On 2 cores, rows with more
// than 2 processes mostly measure the scheduler (marked *).
//
//   bun bench/modes.ts      (BENCH_SCALE=0.1: a quick smoke run with a tenth of the messages)
import { cpus } from "node:os";
import { cleanUp, fmt, lastJson, machine, type Peer, peerPath, printTable, runId, snapshotLibrary, spawnPeer, sweepSegments } from "./peers/harness.ts";

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const REPEATS = 3;
const TIMEOUT_MS = 120_000;
const RING = 4 << 20;
const RECORD = 80; // a 64-byte message takes 80 bytes of ring (16-byte header)

const { workDir, library, source, sha } = snapshotLibrary();
const { createChannel, removeChannel } = await import("../src/index.ts"); // loads the snapshot

type Mode = "SPSC" | "MPSC" | "SPMC" | "MPMC" | "BROADCAST";
interface Config {
  label: string;
  mode: Mode;
  producers: number;
  consumers: number;
  perProducer: number; // messages per producer at BENCH_SCALE=1 (about 1 s of work on the reference VM)
}
const config = (mode: Mode, producers: number, consumers: number, total: number): Config => ({
  label: `${mode} ${producers}->${consumers}`,
  mode,
  producers,
  consumers,
  perProducer: Math.round(total / producers),
});
const spsc = config("SPSC", 1, 1, 4_000_000);
const configs = [
  spsc,
  ...[1, 2, 4].map((p) => config("MPSC", p, 1, 4_000_000)),
  ...[1, 2, 4].map((c) => config("SPMC", 1, c, 2_000_000)),
  config("MPMC", 2, 2, 2_000_000),
  ...[1, 4, 16].map((s) => config("BROADCAST", 1, s, 1_000_000)),
].filter((c) => c === spsc || !process.env.BENCH_ONLY || process.env.BENCH_ONLY.split(",").includes(c.mode));

interface ProducerReport {
  sent: number;
  startMs: number;
  endMs: number;
  cpuMs: number;
  fullRetries: number;
}
interface ConsumerReport {
  received: number;
  errors: number;
  duplicates: number;
  firstError?: string;
  firstMs: number;
  lastMs: number;
  bitmaps?: string[];
}
interface Result {
  rate: number; // delivered msg/s (BROADCAST: sent msg/s)
  cpuNsPerSend: number; // producer CPU per message
  split: number[]; // messages per consumer
  fullRetries: number;
}

const bun = process.execPath;
let runNumber = 0;

/** Checks that every (producer, seq) was received by exactly one consumer. */
function mergeBitmaps(reports: ConsumerReport[], producers: number, perProducer: number): string | undefined {
  for (let p = 0; p < producers; p++) {
    const all = new Uint8Array(Math.ceil(perProducer / 8));
    for (const r of reports) {
      const bits = Buffer.from(r.bitmaps![p]!, "base64");
      for (let i = 0; i < all.length; i++) {
        if (all[i]! & bits[i]!) return `producer ${p}: a message near seq ${i * 8} was received by two consumers`;
        all[i]! |= bits[i]!;
      }
    }
    for (let seq = 0; seq < perProducer; seq++)
      if (!(all[seq >>> 3]! & (1 << (seq & 7)))) return `producer ${p}: seq ${seq} was never received`;
  }
}

async function runOnce(c: Config): Promise<Result> {
  const run = ++runNumber;
  const name = `${runId}-${run}`;
  const uri = `ipc://${name}`;
  const per = Math.max(1000, Math.round(c.perProducer * SCALE));
  const total = c.producers * per;
  const bufferSize = c.mode === "BROADCAST" ? 2 ** Math.ceil(Math.log2(per * RECORD + 4096)) : RING;
  const ordered = c.mode !== "SPMC" && c.mode !== "MPMC";
  const common = [uri, c.mode, String(bufferSize)];
  const consumers = Array.from({ length: c.consumers }, () =>
    spawnPeer([bun, peerPath("mode-consumer.ts"), ...common, String(c.producers), String(per), ordered ? "ordered" : "any", String(TIMEOUT_MS)], TIMEOUT_MS, ordered ? "ignore" : "pipe"),
  );
  const all: Peer[] = [...consumers];
  let failed: string | undefined; // the first peer that failed; it takes the others down at once
  const watch = (p: Peer, what: string) =>
    p.done.then((r) => {
      if (r.code === 0 || failed) return;
      failed = `${c.label}: ${what} failed first (exit code ${r.code}${r.code === 137 ? ": SIGKILL, its timeout?" : ""})`;
      for (const o of all) o.proc.kill("SIGKILL");
    });
  consumers.forEach((p, i) => watch(p, `consumer ${i}`));
  await Promise.all(consumers.map((p) => p.waitFor("ready"))); // subscribed before anything is sent
  const producers = Array.from({ length: c.producers }, (_, id) =>
    spawnPeer([bun, peerPath("mode-producer.ts"), ...common, String(id), String(per), String(TIMEOUT_MS)], TIMEOUT_MS, "pipe"),
  );
  all.push(...producers);
  producers.forEach((p, id) => watch(p, `producer ${id}`));
  await Promise.all(producers.map((p) => p.waitFor("ready")));
  const observer = ordered ? null : createChannel(uri, { open: "attach" });
  try {
    for (const p of producers) p.proc.stdin!.write("go\n"), p.proc.stdin!.flush();
    if (observer) {
      // consumers cannot know when SPMC/MPMC work ends: watch the channel's count, then tell them
      const deadline = Date.now() + TIMEOUT_MS;
      while (!failed && observer.stats().messagesReceived < total) {
        if (Date.now() > deadline) throw new Error(`${c.label}: ${observer.stats().messagesReceived}/${total} received after ${TIMEOUT_MS} ms`);
        await Bun.sleep(5);
      }
      for (const p of consumers) p.proc.stdin!.end();
    }
  } finally {
    observer?.close();
  }
  await Promise.all(all.map((p) => p.done));
  if (failed) throw new Error(failed);
  const sent = (await Promise.all(producers.map((p) => p.done))).map((r, id) => lastJson<ProducerReport>(`${c.label} producer ${id}`, r));
  const got = (await Promise.all(consumers.map((p) => p.done))).map((r, i) => lastJson<ConsumerReport>(`${c.label} consumer ${i}`, r));

  for (const r of sent) if (r.sent !== per) throw new Error(`${c.label}: a producer sent ${r.sent}/${per}`);
  for (const r of got) if (r.errors || r.duplicates) throw new Error(`${c.label}: ${r.errors} bad, ${r.duplicates} duplicates: ${r.firstError}`);
  const received = got.reduce((n, r) => n + r.received, 0);
  const expected = c.mode === "BROADCAST" ? per * c.consumers : total;
  if (received !== expected) throw new Error(`${c.label}: received ${received}/${expected}`);
  if (!ordered) {
    const wrong = mergeBitmaps(got, c.producers, per);
    if (wrong) throw new Error(`${c.label}: ${wrong}`);
  }
  if (sweepSegments(removeChannel, `-${run}`)) console.log(`  warning: segment psyne.${name} was left in /dev/shm (removed it)`);

  const startMs = Math.min(...sent.map((r) => r.startMs));
  const endMs = c.mode === "BROADCAST" ? Math.max(...sent.map((r) => r.endMs)) : Math.max(...got.filter((r) => r.received).map((r) => r.lastMs));
  return {
    rate: total / ((endMs - startMs) / 1000),
    cpuNsPerSend: (1e6 * sent.reduce((t, r) => t + r.cpuMs, 0)) / total,
    split: got.map((r) => r.received),
    fullRetries: sent.reduce((n, r) => n + r.fullRetries, 0),
  };
}

const processes = (c: Config) => c.producers + c.consumers;
const oversubscribed = (c: Config) => processes(c) > cpus().length;

console.log(machine());
console.log(`psyne C core: ${source}, sha256 ${sha}... (all peers load a copy: ${library})`);
console.log(`64-byte messages; ${REPEATS} runs of each, interleaved; median by msg/s; every message checked\n`);

const results = new Map<Config, Result[]>();
try {
  // repeats outermost, so a slow spell of the machine hits every configuration alike
  for (let r = 1; r <= REPEATS; r++)
    for (const c of configs) {
      const result = await runOnce(c);
      results.set(c, [...(results.get(c) ?? []), result]);
      console.log(`  run ${r}: ${c.label.padEnd(16)} ${fmt(result.rate).padStart(12)} msg/s`);
    }
} catch (error) {
  // say what failed, and still whether anything was left behind
  console.error(`\nbenchmark failed: ${(error as Error).message}`);
  console.log(await cleanUp(workDir, removeChannel));
  process.exit(1);
}
const finalLine = await cleanUp(workDir, removeChannel);

const median = (c: Config) => [...results.get(c)!].sort((a, b) => a.rate - b.rate)[REPEATS >> 1]!;
const byLabel = (label: string) => configs.find((c) => c.label === label);
const spscRate = median(spsc).rate;
const mark = (c: Config) => `${c.label}${oversubscribed(c) ? " *" : ""}`;
console.log("");
printTable([
  ["configuration", "processes", "msg/s", "vs SPSC", "messages per consumer"],
  ...configs
    .filter((c) => c.mode !== "BROADCAST")
    .map((c) => {
      const m = median(c);
      return [mark(c), String(processes(c)), fmt(m.rate), `${fmt(m.rate / spscRate, 2)}x`, m.split.length > 1 ? m.split.map((n) => fmt(n)).join(" / ") : ""];
    }),
]);
const [b1, b16] = [byLabel("BROADCAST 1->1"), byLabel("BROADCAST 1->16")];
if (b1) {
  const one = median(b1);
  console.log("");
  printTable([
    ["BROADCAST producer", "processes", "send msg/s", "time per send vs 1", "CPU ns/send", "vs 1", "full retries"],
    ...configs
      .filter((c) => c.mode === "BROADCAST")
      .map((c) => {
        const m = median(c);
        const cpu = [fmt(m.cpuNsPerSend), `${fmt(m.cpuNsPerSend / one.cpuNsPerSend, 2)}x`];
        return [mark(c), String(processes(c)), fmt(m.rate), `${fmt(one.rate / m.rate, 2)}x`, ...cpu, fmt(m.fullRetries)];
      }),
  ]);
  console.log("CPU ns/send: the producer's own CPU time per message (process.cpuUsage), which time-sharing does not inflate");
}
console.log(`\n* more processes than the ${cpus().length} cores: these rows mostly measure the scheduler (who runs when), not psyne.`);

const verdict = (ok: boolean) => (ok ? "met" : "NOT met");
console.log("\ntargets:");
for (const label of ["MPSC 2->1", "MPMC 2->2"]) {
  const c = byLabel(label);
  if (c) console.log(`  ${label} >= 0.5x SPSC: ${fmt(median(c).rate / spscRate, 2)}x, ${verdict(median(c).rate >= 0.5 * spscRate)}`);
}
if (b1 && b16) {
  const [one, sixteen] = [median(b1), median(b16)];
  const [slower, cpu] = [one.rate / sixteen.rate, sixteen.cpuNsPerSend / one.cpuNsPerSend];
  console.log(`  BROADCAST send rate with 16 subscribers within 1.5x of 1: ${fmt(slower, 2)}x slower, ${verdict(slower <= 1.5)}`);
  console.log(`  BROADCAST CPU per send with 16 subscribers within 1.5x of 1: ${fmt(cpu, 2)}x, ${verdict(cpu <= 1.5)}`);
}
console.log(finalLine);
