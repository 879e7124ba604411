// Network channels against the alternatives, in one run: psyne tcp:// and unix:// (one send() per
// message, and sendBatch/drainBytes) beside a raw Bun TCP socket and a raw Unix socket moving the
// same messages in ~64 KiB batched writes, Bun's built-in IPC and psyne's own ipc://, at 64 B,
// 4 KiB and 64 KiB; the cost of the acknowledgements (tcp:// with PSYNE_BENCH_NO_ACK=1, the
// benchmark-only switch that frees what the socket took and sends no acknowledgement); ping-pong
// one-way latency against raw sockets; and the RSS of both processes over 10 M messages on tcp://.
// Every contestant is two processes and the consumer checks every message (bench/peers/pattern.ts).
//
//   bun bench/net.ts                      (BENCH_SCALE=0.1: a quick smoke run)
import { rmSync } from "node:fs";
import { join } from "node:path";
import { cleanUp, fmt, lastJson, machine, type Peer, peerPath, printTable, runId, snapshotLibrary, spawnPeer, sweepSegments } from "./peers/harness.ts";
import type { LatencyReport } from "./peers/lat-common.ts";
import type { Report } from "./peers/pattern.ts";

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const REPEATS = 3;
const SIZES = [64, 4096, 65536];
const RUN_SECONDS = 0.5;
const TIMEOUT_MS = 120_000;
const RING = 4 << 20;
const MEMORY_MESSAGES = Math.max(200_000, Math.round(10_000_000 * SCALE));
const ROUNDS = Math.max(2000, Math.round(20_000 * SCALE));
const WARMUP = Math.max(200, Math.round(2000 * SCALE));

const { workDir, library, source, sha } = snapshotLibrary();
process.on("exit", () => rmSync(workDir, { recursive: true, force: true })); // also when a run fails
const { removeChannel } = await import("../src/index.ts");
const bun = process.execPath;
let runNumber = 0;

const batchOf = (size: number) => Math.max(1, Math.min(256, Math.floor((256 << 10) / size)));
const sizeLabel = (size: number) => (size >= 1024 ? `${size >> 10} KiB` : `${size} B`);

async function settle(what: string, peers: Peer[]): Promise<{ code: number; out: string }[]> {
  let failed: string | undefined;
  const results = await Promise.all(
    peers.map(async (p) => {
      const r = await p.done;
      if (r.code !== 0 && !failed) {
        failed = `${what}: a peer failed (exit code ${r.code}); it printed: ${r.out.slice(-300)}`;
        for (const other of peers) other.proc.kill("SIGKILL");
      }
      return r;
    }),
  );
  if (failed) throw new Error(failed);
  return results;
}

interface Contestant {
  id: string;
  name: string;
  rate: Record<number, number>; // rough msg/s, only to size the runs
  start(size: number, count: number, warmup: number): Promise<Peer[]> | Peer[];
}

/** psyne over the network: the consumer listens (and reports), the producer connects. */
const net = (scheme: "tcp" | "unix", how: "send" | "batch", rate: Record<number, number>, env: Record<string, string> = {}, label = ""): Contestant => ({
  id: `${scheme}-${how}${label ? "-noack" : ""}`,
  name: `psyne ${scheme}://, ${how === "send" ? "send() per message" : "sendBatch/drainBytes"}${label}`,
  rate,
  async start(size, count, warmup) {
    const uri = scheme === "tcp" ? "tcp://127.0.0.1:0" : `unix://${join(workDir, `n${++runNumber}.sock`)}`;
    const common = [String(size), String(count), String(TIMEOUT_MS), String(RING)];
    const withEnv = ["env", ...Object.entries(env).map(([k, v]) => `${k}=${v}`)]; // as latency.ts passes its settings
    const consumer = spawnPeer([...withEnv, bun, peerPath("net-consumer.ts"), how, uri, ...common, String(warmup)], TIMEOUT_MS);
    await consumer.waitFor("\n");
    const address = /^listening (\S+)$/m.exec(consumer.stdout())![1]!;
    const producer = spawnPeer([...withEnv, bun, peerPath("net-producer.ts"), how, address, ...common, String(batchOf(size)), String(warmup)], TIMEOUT_MS);
    return [consumer, producer];
  },
});
const rawSocket = (kind: "unix" | "tcp", rate: Record<number, number>): Contestant => ({
  id: `raw-${kind}`,
  name: kind === "unix" ? "raw Unix socket (64 KiB writes)" : "raw TCP 127.0.0.1 (64 KiB writes)",
  rate,
  async start(size, count) {
    const rest = [String(size), String(count), String(TIMEOUT_MS)];
    const consumer = spawnPeer([bun, peerPath("socket-consumer.ts"), kind === "unix" ? `unix:${join(workDir, `r${++runNumber}.sock`)}` : "tcp", ...rest], TIMEOUT_MS);
    await consumer.waitFor("\n");
    const address = /^listening (\S+)$/m.exec(consumer.stdout())![1]!;
    return [consumer, spawnPeer([bun, peerPath("socket-producer.ts"), address, ...rest], TIMEOUT_MS)];
  },
});
const bunIpc = (serialization: "json" | "advanced", rate: Record<number, number>): Contestant => ({
  id: `bun-ipc-${serialization}`,
  name: `Bun IPC (${serialization === "json" ? "json, string" : "advanced, Uint8Array"})`,
  rate,
  start: (size, count) => [spawnPeer([bun, peerPath("ipc-consumer.ts"), serialization, String(size), String(count), String(TIMEOUT_MS)], TIMEOUT_MS)],
});
const psyneIpc = (how: "send" | "batch", rate: Record<number, number>): Contestant => ({
  id: `ipc-${how}`,
  name: `psyne ipc://, ${how === "send" ? "send() per message" : "sendBatch/drainBytes"}`,
  rate,
  start(size, count, warmup) {
    const args = [how, `${runId}-${++runNumber}`, String(size), String(count), String(TIMEOUT_MS), String(RING), String(batchOf(size)), String(warmup)];
    const consumer = spawnPeer([bun, peerPath("psyne-consumer.ts"), ...args], TIMEOUT_MS);
    return [consumer, spawnPeer([bun, peerPath("psyne-producer.ts"), ...args], TIMEOUT_MS)];
  },
});

const contestants = [
  net("tcp", "send", { 64: 3e6, 4096: 300e3, 65536: 25e3 }),
  net("tcp", "batch", { 64: 8e6, 4096: 400e3, 65536: 25e3 }),
  net("tcp", "batch", { 64: 9e6, 4096: 450e3, 65536: 30e3 }, { PSYNE_BENCH_NO_ACK: "1" }, " (no acks)"),
  rawSocket("tcp", { 64: 12e6, 4096: 500e3, 65536: 30e3 }),
  net("unix", "send", { 64: 3e6, 4096: 400e3, 65536: 30e3 }),
  net("unix", "batch", { 64: 8e6, 4096: 600e3, 65536: 40e3 }),
  rawSocket("unix", { 64: 20e6, 4096: 900e3, 65536: 60e3 }),
  psyneIpc("send", { 64: 7e6, 4096: 2e6, 65536: 200e3 }),
  psyneIpc("batch", { 64: 25e6, 4096: 2.5e6, 65536: 200e3 }),
  bunIpc("json", { 64: 2.4e6, 4096: 200e3, 65536: 15e3 }),
  bunIpc("advanced", { 64: 1.5e6, 4096: 370e3, 65536: 30e3 }),
];
const only = process.env.BENCH_ONLY?.split(",").map((s) => s.trim());
const chosen = contestants.filter((c) => !only || only.includes(c.id));

const countFor = (c: Contestant, size: number) => Math.max(size >= 65536 ? 200 : 2000, Math.round(c.rate[size]! * RUN_SECONDS * SCALE));

async function runOnce(c: Contestant, size: number): Promise<number> {
  const count = countFor(c, size);
  const what = `${c.name} ${sizeLabel(size)}`;
  const results = await settle(what, await c.start(size, count, Math.floor(count / 10)));
  const report = lastJson<Report>(what, results[0]!);
  if (report.messages !== count || report.errors !== 0) throw new Error(`${what}: received ${report.messages}/${count}, ${report.errors} bad: ${report.firstError}`);
  sweepSegments(removeChannel);
  return count / (report.elapsedMs / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const spread = (xs: number[]) => {
  const m = median(xs);
  return Math.max(...xs.map((x) => Math.abs(x - m) / m));
};

console.log(machine());
console.log(`library ${source} (sha256 ${sha}, copied to ${library}); scale ${SCALE}; ${REPEATS} runs each, interleaved, median\n`);
const started = performance.now();
const rates = new Map<string, number>(); // `${id}@${size}` -> median msg/s
const rows: string[][] = [["contestant", "size", "msg/s", "MB/s", "spread"]];
for (const size of SIZES) {
  const samples = new Map<Contestant, number[]>(chosen.map((c) => [c, []]));
  for (let r = 0; r < REPEATS; r++) for (const c of chosen) samples.get(c)!.push(await runOnce(c, size));
  for (const c of chosen) {
    const xs = samples.get(c)!;
    const m = median(xs);
    rates.set(`${c.id}@${size}`, m);
    rows.push([c.name, sizeLabel(size), fmt(m), fmt((m * size) / 1e6), `±${Math.round(spread(xs) * 100)}%`]);
  }
}
printTable(rows);

// ---- latency -------------------------------------------------------------------------------------
async function latency(kind: "tcp" | "unix" | "raw-tcp" | "raw-unix"): Promise<LatencyReport> {
  const counts = [String(ROUNDS), String(WARMUP), String(TIMEOUT_MS)];
  let echo: Peer;
  let ping: Peer;
  if (kind === "raw-unix") {
    const path = join(workDir, `l${++runNumber}.sock`);
    echo = spawnPeer([bun, peerPath("lat-unix.ts"), "echo", path, String(TIMEOUT_MS)], TIMEOUT_MS);
    await echo.waitFor("ready");
    ping = spawnPeer([bun, peerPath("lat-unix.ts"), "ping", path, ...counts], TIMEOUT_MS);
  } else if (kind === "raw-tcp") {
    echo = spawnPeer([bun, peerPath("lat-net.ts"), "raw-echo", String(TIMEOUT_MS)], TIMEOUT_MS);
    await echo.waitFor("\n");
    const port = /^listening (\d+)$/m.exec(echo.stdout())![1]!;
    ping = spawnPeer([bun, peerPath("lat-net.ts"), "raw-ping", port, ...counts], TIMEOUT_MS);
  } else {
    const uri = kind === "tcp" ? "tcp://127.0.0.1:0" : `unix://${join(workDir, `l${++runNumber}.sock`)}`;
    echo = spawnPeer([bun, peerPath("lat-net.ts"), "echo", uri, String(TIMEOUT_MS)], TIMEOUT_MS);
    await echo.waitFor("\n");
    const address = /^listening (\S+)$/m.exec(echo.stdout())![1]!;
    ping = spawnPeer([bun, peerPath("lat-net.ts"), "ping", address, ...counts], TIMEOUT_MS);
  }
  const result = (await ping.done);
  echo.proc.kill("SIGKILL");
  await echo.done;
  const report = lastJson<LatencyReport>(`latency ${kind}`, result);
  if (report.errors) throw new Error(`latency ${kind}: ${report.firstError}`);
  return report;
}
const latencies = new Map<string, LatencyReport>();
if (!only || only.includes("latency")) {
  const kinds = ["raw-tcp", "tcp", "raw-unix", "unix"] as const;
  const runs = new Map<string, LatencyReport[]>(kinds.map((k) => [k, []]));
  for (let r = 0; r < REPEATS; r++) for (const k of kinds) runs.get(k)!.push(await latency(k));
  console.log(`\nping-pong, 64 B, one-way = round trip / 2 (${fmt(ROUNDS)} rounds after ${fmt(WARMUP)}; the run with the median p50 of ${REPEATS})`);
  const lrows = [["contestant", "p50 us", "p99 us", "max us"]];
  for (const k of kinds) {
    const sorted = [...runs.get(k)!].sort((a, b) => a.p50 - b.p50);
    const mid = sorted[Math.floor(sorted.length / 2)]!;
    latencies.set(k, mid);
    const name = { "raw-tcp": "raw TCP 127.0.0.1", tcp: "psyne tcp://", "raw-unix": "raw Unix socket", unix: "psyne unix://" }[k];
    lrows.push([name, fmt(mid.p50 / 1000, 1), fmt(mid.p99 / 1000, 1), fmt(mid.max / 1000, 1)]);
  }
  printTable(lrows);
}

// ---- memory ----------------------------------------------------------------------------------------
let memoryLine = "";
if (!only || only.includes("memory")) {
  const c = net("tcp", "batch", {});
  const warmup = Math.round(MEMORY_MESSAGES / 10);
  const what = `memory run (tcp://, batch, 64 B, ${fmt(MEMORY_MESSAGES)} messages)`;
  const results = await settle(what, await c.start(64, MEMORY_MESSAGES, warmup));
  const consumer = lastJson<Report & { rss: number[] }>(what, results[0]!);
  if (consumer.messages !== MEMORY_MESSAGES || consumer.errors) throw new Error(`${what}: ${consumer.messages} received, ${consumer.errors} bad`);
  const producer = lastJson<{ rss: number[] }>(`${what} producer`, results[1]!);
  const mib = (b: number) => `${(b / (1 << 20)).toFixed(1)} MiB`;
  console.log(`\nmemory: ${fmt(MEMORY_MESSAGES)} messages of 64 B over tcp:// (batch API), ${fmt(MEMORY_MESSAGES / (consumer.elapsedMs / 1000))} msg/s`);
  const mrows = [["RSS", "at start", `after ${fmt(warmup)} (warm-up)`, "at end", "end - warm-up", "verdict"]];
  for (const [name, rss] of [["consumer", consumer.rss], ["producer", producer.rss]] as const) {
    const growth = rss[2]! - rss[1]!;
    mrows.push([name, mib(rss[0]!), mib(rss[1]!), mib(rss[2]!), mib(growth), growth > 8 << 20 ? "GROWS" : "no growth"]);
  }
  printTable(mrows);
  memoryLine = "measured";
}

// ---- targets -----------------------------------------------------------------------------------------
const rate = (id: string, size: number) => rates.get(`${id}@${size}`);
const lines: string[] = [];
const target = (what: string, got: number | undefined, against: number | undefined, min: number, unit = "x") => {
  if (got === undefined || against === undefined) return;
  const ratio = got / against;
  lines.push(`  ${what}: ${ratio.toFixed(2)}${unit} (${fmt(got)} vs ${fmt(against)}) (target ${min}${unit}): ${ratio >= min ? "met" : `NOT met, ${Math.round((1 - ratio / min) * 100)}% short`}`);
};
console.log("\ntargets (medians of this run):");
target("tcp:// send() 64 B vs psyne ipc:// send()", rate("tcp-send", 64), rate("ipc-send", 64), 0.8);
target("tcp:// send() 64 B vs Bun IPC (json, its fastest here)", rate("tcp-send", 64), Math.max(rate("bun-ipc-json", 64) ?? 0, rate("bun-ipc-advanced", 64) ?? 0) || undefined, 4);
target("tcp:// sendBatch 64 B vs raw TCP", rate("tcp-batch", 64), rate("raw-tcp", 64), 0.7);
for (const size of [4096, 65536]) {
  target(`tcp:// sendBatch ${sizeLabel(size)} vs raw TCP`, rate("tcp-batch", size), rate("raw-tcp", size), 0.8);
  target(`tcp:// send() ${sizeLabel(size)} vs raw TCP`, rate("tcp-send", size), rate("raw-tcp", size), 0.8);
}
target("unix:// send() 64 B vs psyne ipc:// send()", rate("unix-send", 64), rate("ipc-send", 64), 0.8);
target("unix:// sendBatch 64 B vs raw Unix socket", rate("unix-batch", 64), rate("raw-unix", 64), 0.7);
for (const size of [4096, 65536]) {
  target(`unix:// sendBatch ${sizeLabel(size)} vs raw Unix socket`, rate("unix-batch", size), rate("raw-unix", size), 0.8);
  target(`unix:// send() ${sizeLabel(size)} vs raw Unix socket`, rate("unix-send", size), rate("raw-unix", size), 0.8);
}
const lat = (k: string) => latencies.get(k)?.p50;
if (lat("tcp") && lat("raw-tcp")) lines.push(`  tcp:// ping-pong one-way p50 within 1.2x raw TCP: ${(lat("tcp")! / lat("raw-tcp")!).toFixed(2)}x (${fmt(lat("tcp")! / 1000, 1)} vs ${fmt(lat("raw-tcp")! / 1000, 1)} us): ${lat("tcp")! <= 1.2 * lat("raw-tcp")! ? "met" : "NOT met"}`);
if (lat("unix") && lat("raw-unix")) lines.push(`  unix:// ping-pong one-way p50 within 1.2x raw Unix: ${(lat("unix")! / lat("raw-unix")!).toFixed(2)}x (${fmt(lat("unix")! / 1000, 1)} vs ${fmt(lat("raw-unix")! / 1000, 1)} us): ${lat("unix")! <= 1.2 * lat("raw-unix")! ? "met" : "NOT met"}`);
for (const size of SIZES) {
  const withAcks = rate("tcp-batch", size);
  const without = rate("tcp-batch-noack", size);
  if (withAcks && without) lines.push(`  acknowledgements at ${sizeLabel(size)}: tcp:// batch ${fmt(withAcks)} msg/s with, ${fmt(without)} without: they cost ${Math.round((1 - withAcks / without) * 100)}%`);
}
console.log(lines.join("\n"));
console.log(`\nsuite took ${((performance.now() - started) / 1000).toFixed(1)} s; ${memoryLine ? "" : "(no memory run) "}${await cleanUp(workDir, removeChannel)}`);
