// The hot path between two processes, one table: a 64-byte struct (seq: u32, a..g: f64; every
// field of every message checked) through psyne's writer/reader, its per-message API (new T /
// receive(T), and ByteVector send()/receive() at 64 B), its batch paths (sendBatch with drainBytes
// or receiveBlock), Bun IPC, a Unix socket with batched writes and a plain C ring; then parked
// wake-up latency (bench/latency.ts: doorbell, waiter thread and Bun IPC, back to back and 1 ms
// apart; busy-poll; idle cost). Three runs of each, interleaved; medians; ratios in the same run.
//
//   bun bench/hot.ts                  (BENCH_SCALE=0.1: a quick smoke run; BENCH_LATENCY=0: no latency part)
import { execFileSync, spawnSync } from "node:child_process";
import { join } from "node:path";
import { cleanUp, findZig, fmt, lastJson, machine, type Peer, peerPath, printTable, runId, snapshotLibrary, spawnPeer, sweepSegments } from "./peers/harness.ts";
import type { Report } from "./peers/pattern.ts";

const SIZE = 64;
const REPEATS = 3;
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const RUN_SECONDS = 0.5; // each run's messages are sized for about this long on a quiet machine
const TIMEOUT_MS = 60_000;
const RING = 4 << 20;
const BATCH = 256;

const { workDir, library, source, sha } = snapshotLibrary();
const { removeChannel } = await import("../src/index.ts"); // loads the snapshot
const zig = findZig();
const cRingBinary = join(workDir, "c-ring");
const bun = process.execPath;
let runNumber = 0;

interface Contestant {
  id: string;
  name: string;
  rate: number; // rough msg/s on a quiet machine, only to size the runs
  start(count: number): Peer[] | Promise<Peer[]>; // the first peer prints the Report
  psyne?: boolean;
}

const pair = (consumer: string[], producer: string[]): Peer[] => [spawnPeer(consumer, TIMEOUT_MS), spawnPeer(producer, TIMEOUT_MS)];
const struct = (id: string, name: string, rate: number, produce: string, consume: string): Contestant => ({
  id,
  name,
  rate,
  psyne: true,
  start(count) {
    const channel = `${runId}-${++runNumber}`;
    const args = (file: string, how: string) => [bun, peerPath(file), how, channel, String(count), String(TIMEOUT_MS), String(RING)];
    return pair(args("struct-consumer.ts", consume), [...args("struct-producer.ts", produce), String(BATCH)]);
  },
});

const writer = struct("writer", "psyne writer/reader, one message per call", 25e6, "writer", "reader");
const structSend = struct("struct-send", "psyne new T + send() / receive(T)", 6e6, "send", "send");
const drain = struct("drain", "psyne sendBatch / drainBytes", 35e6, "batch", "batch");
const block = struct("block", "psyne sendBatch / receiveBlock", 45e6, "batch", "block");
const bytes: Contestant = {
  id: "bytes",
  name: "psyne ByteVector send() / receive()",
  rate: 8e6,
  psyne: true,
  start(count) {
    const args = ["send", `${runId}-${++runNumber}`, String(SIZE), String(count), String(TIMEOUT_MS), String(RING), "1", String(Math.floor(count / 10))];
    return pair([bun, peerPath("psyne-consumer.ts"), ...args], [bun, peerPath("psyne-producer.ts"), ...args]);
  },
};
const ipc: Contestant = {
  id: "ipc",
  name: "Bun IPC (json, 64-char string)",
  rate: 2.4e6,
  start: (count) => [spawnPeer([bun, peerPath("ipc-consumer.ts"), "json", String(SIZE), String(count), String(TIMEOUT_MS)], TIMEOUT_MS)],
};
const unix: Contestant = {
  id: "unix",
  name: "Unix socket (64 KiB writes)",
  rate: 25e6,
  async start(count) {
    const rest = [String(SIZE), String(count), String(TIMEOUT_MS)];
    const consumer = spawnPeer([bun, peerPath("socket-consumer.ts"), `unix:${join(workDir, `${++runNumber}.sock`)}`, ...rest], TIMEOUT_MS);
    await consumer.waitFor("\n"); // "listening ADDRESS"
    const address = /^listening (\S+)$/m.exec(consumer.stdout())![1]!;
    return [consumer, spawnPeer([bun, peerPath("socket-producer.ts"), address, ...rest], TIMEOUT_MS)];
  },
};
const cRing: Contestant = {
  id: "c-ring",
  name: "C SPSC ring (shared memory)",
  rate: 100e6,
  start: (count) => [spawnPeer([cRingBinary, String(SIZE), String(count), String(RING), String(TIMEOUT_MS / 1000)], TIMEOUT_MS)],
};
const contestants = [writer, structSend, bytes, drain, block, ipc, unix, cRing];

async function settle(what: string, peers: Peer[]): Promise<{ code: number; out: string }[]> {
  let failed: string | undefined;
  const results = await Promise.all(
    peers.map(async (p, i) => {
      const r = await p.done;
      if (r.code !== 0 && !failed) {
        failed = `${what}: ${i ? "the producer" : "the consumer"} failed first (exit code ${r.code})`;
        for (const other of peers) other.proc.kill("SIGKILL");
      }
      return r;
    }),
  );
  if (failed) throw new Error(failed);
  return results;
}

async function runOnce(c: Contestant): Promise<number> {
  const count = Math.max(10_000, Math.round(c.rate * RUN_SECONDS * SCALE));
  const results = await settle(c.name, await c.start(count));
  const report = lastJson<Report>(c.name, results[0]!);
  if (report.messages !== count || report.errors !== 0) throw new Error(`${c.name}: received ${report.messages}/${count}, ${report.errors} bad: ${report.firstError}`);
  if (c.psyne && sweepSegments(removeChannel)) throw new Error(`${c.name}: left a segment in /dev/shm`);
  return count / (report.elapsedMs / 1000);
}

console.log(machine());
console.log(`psyne C core: ${source}, sha256 ${sha}... (all peers load a copy: ${library})`);
console.log(`${SIZE}-byte messages (a struct of seq: u32 and seven f64 where psyne types it), every field of every message checked; ${REPEATS} runs of each, interleaved; median\n`);

const rates = new Map<Contestant, number[]>();
try {
  if (!zig) throw new Error("the C ring needs zig: the Zig dev dependency (npm install in a clone) or zig on PATH");
  execFileSync(zig, ["cc", "-O2", "-o", cRingBinary, peerPath("c-ring.c")], { stdio: "inherit", timeout: 120_000 });
  for (let r = 1; r <= REPEATS; r++)
    for (const c of contestants) {
      const rate = await runOnce(c);
      rates.set(c, [...(rates.get(c) ?? []), rate]);
      console.log(`  run ${r}: ${c.name.padEnd(44)} ${fmt(rate).padStart(12)} msg/s`);
    }
} catch (error) {
  console.error(`\nbenchmark failed: ${(error as Error).message}`);
  console.log(await cleanUp(workDir, removeChannel));
  process.exit(1);
}

const median = (c: Contestant) => [...rates.get(c)!].sort((a, b) => a - b)[REPEATS >> 1]!;
const spread = (c: Contestant) => `±${fmt((50 * (Math.max(...rates.get(c)!) - Math.min(...rates.get(c)!))) / median(c))}%`;
const x = (v: number) => `${fmt(v, v < 0.1 ? 3 : 2)}x`;
console.log("");
printTable([
  ["64 B, two processes", "msg/s", "ns/msg", "spread", "/ Bun IPC", "/ Unix socket", "/ C ring"],
  ...contestants.map((c) => {
    const m = median(c);
    return [c.name, fmt(m), fmt(1e9 / m, 1), spread(c), x(m / median(ipc)), x(m / median(unix)), x(m / median(cRing))];
  }),
]);

const verdict = (ok: boolean) => (ok ? "met" : "NOT met");
const mps = (v: number) => `${fmt(v / 1e6, 2)} M msg/s`;
const best = median(block) >= median(drain) ? block : drain;
console.log("\ntargets (medians of this run):");
console.log(`  writer/reader >= 20 M msg/s: ${mps(median(writer))}, ${verdict(median(writer) >= 20e6)}`);
console.log(`  writer/reader >= 8x Bun IPC: ${x(median(writer) / median(ipc))}, ${verdict(median(writer) >= 8 * median(ipc))}`);
console.log(`  batch/block path (${best.name}) >= 50 M msg/s: ${mps(median(best))}, ${verdict(median(best) >= 50e6)}`);
console.log(`  batch/block path >= 1.8x the batched Unix socket: ${x(median(best) / median(unix))}, ${verdict(median(best) >= 1.8 * median(unix))}`);
console.log(`  batch/block path as a fraction of the C ring: ${fmt((100 * median(best)) / median(cRing))}%`);
console.log(`  receiveBlock vs drainBytes: ${x(median(block) / median(drain))}`);
console.log(`  ByteVector send()/receive() >= 10 M msg/s: ${mps(median(bytes))}, ${verdict(median(bytes) >= 10e6)}`);
console.log(await cleanUp(workDir, removeChannel));

if (process.env.BENCH_LATENCY !== "0") {
  console.log("\nparked wake-up latency (bench/latency.ts):\n");
  const run = spawnSync(bun, [peerPath("../latency.ts")], {
    stdio: "inherit",
    env: { ...process.env, BENCH_ONLY: "busy-poll receive(),await recv(),Bun IPC", PSYNE_LIB: source },
  });
  if (run.status !== 0) process.exit(run.status ?? 1);
}
