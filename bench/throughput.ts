// Multi-process throughput: psyne SPSC over ipc:// against Bun's built-in IPC and a Unix domain
// socket, each as a producer process and a consumer process (scripts in bench/peers/), at 64 B
// and 4 KiB. Every message is checked by the consumer; a run with any error fails the benchmark.
// This process only spawns, waits and reports: it stays idle while a pair runs.
//
//   bun bench/throughput.ts     (BENCH_SCALE=0.1: a quick smoke run; BENCH_DIAGNOSTIC=1: add rawRing below)
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { libraryPath } from "../src/ffi.ts";
import { removeChannel } from "../src/index.ts";
import type { Report } from "./peers/pattern.ts";

const REPEATS = 3;
const SIZES = [64, 4096];
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const RUN_TIMEOUT_MS = 60_000;

interface Contestant {
  name: string;
  /** Messages per run at each size, chosen so a run lasts about 1 to 2 s on the reference machine. */
  counts: Record<number, number>;
  /** Starts the processes of one run; returns them and the one whose stdout carries the Report. */
  spawn(size: number, count: number): { procs: Bun.Subprocess[]; reporter: Bun.Subprocess; cleanup(): string | undefined };
}

// Every peer loads one snapshot of the C core, so a rebuild during the run cannot mix two builds.
const workDir = mkdtempSync(join(tmpdir(), "psyne-bench-"));
const library = join(workDir, basename(libraryPath));
copyFileSync(libraryPath, library);
const librarySha = new Bun.CryptoHasher("sha256").update(readFileSync(library)).digest("hex").slice(0, 16);

const bun = process.execPath;
const peer = (file: string) => new URL(`./peers/${file}`, import.meta.url).pathname;
const spawnPeer = (args: string[], stdout: "pipe" | "ignore") =>
  Bun.spawn({
    cmd: [bun, ...args],
    env: { ...process.env, PSYNE_LIB: library },
    stdout,
    stderr: "inherit",
    timeout: RUN_TIMEOUT_MS,
    killSignal: "SIGKILL",
  });

const runId = `bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
let runNumber = 0;
const warnings: string[] = [];

// the last process to close removes the segment; if it is still there, that is a psyne bug
const psyneCleanup = (name: string) => () =>
  removeChannel(name) ? `segment psyne.${name} was left in /dev/shm (removed it)` : undefined;

const psyne: Contestant = {
  name: "psyne SPSC ipc://",
  counts: { 64: 8_000_000, 4096: 3_000_000 },
  spawn(size, count) {
    const name = `${runId}-${++runNumber}`;
    const args = [name, String(size), String(count), String(RUN_TIMEOUT_MS)];
    const reporter = spawnPeer([peer("psyne-consumer.ts"), ...args], "pipe");
    const producer = spawnPeer([peer("psyne-producer.ts"), ...args], "ignore");
    return { procs: [reporter, producer], reporter, cleanup: psyneCleanup(name) };
  },
};

// BENCH_DIAGNOSTIC=1 adds psyne's C ring through bare FFI calls (no per-message JS objects):
// the ceiling the public API could reach on this machine with the same checks.
const rawRing: Contestant = {
  name: "diagnostic: psyne C ring, bare FFI",
  counts: psyne.counts,
  spawn(size, count) {
    const name = `${runId}-${++runNumber}`;
    const args = [name, String(size), String(count), String(RUN_TIMEOUT_MS)];
    const reporter = spawnPeer([peer("raw-ring.ts"), "consumer", ...args], "pipe");
    const producer = spawnPeer([peer("raw-ring.ts"), "producer", ...args], "ignore");
    return { procs: [reporter, producer], reporter, cleanup: psyneCleanup(name) };
  },
};

const bunIpc = (serialization: "json" | "advanced", counts: Record<number, number>): Contestant => ({
  name: `Bun IPC (${serialization === "json" ? "json, string" : "advanced, Uint8Array"})`,
  counts,
  spawn(size, count) {
    // the consumer spawns the producer as its IPC child: the pair is two processes, as for the others
    const reporter = spawnPeer([peer("ipc-consumer.ts"), serialization, String(size), String(count), String(RUN_TIMEOUT_MS)], "pipe");
    return { procs: [reporter], reporter, cleanup: () => undefined };
  },
});

const unixSocket: Contestant = {
  name: "Unix socket (64 KiB writes)",
  counts: { 64: 16_000_000, 4096: 1_500_000 },
  spawn(size, count) {
    const path = join(workDir, `${++runNumber}.sock`);
    const args = [path, String(size), String(count), String(RUN_TIMEOUT_MS)];
    const reporter = spawnPeer([peer("unix-consumer.ts"), ...args], "pipe");
    const producer = spawnPeer([peer("unix-producer.ts"), ...args], "ignore");
    return { procs: [reporter, producer], reporter, cleanup: () => (rmSync(path, { force: true }), undefined) };
  },
};

const contestants = [
  psyne,
  bunIpc("json", { 64: 2_500_000, 4096: 300_000 }),
  bunIpc("advanced", { 64: 1_500_000, 4096: 500_000 }),
  unixSocket,
  ...(process.env.BENCH_DIAGNOSTIC === "1" ? [rawRing] : []),
];

interface Result {
  msgPerSec: number;
  mbPerSec: number;
}

async function runOnce(c: Contestant, size: number): Promise<Result> {
  const count = Math.max(1000, Math.round(c.counts[size] * SCALE));
  const run = c.spawn(size, count);
  try {
    // bounded by each spawn's timeout; a process that fails takes its partner down at once
    const codes = await Promise.all(
      run.procs.map((p) =>
        p.exited.then((code) => {
          if (code !== 0) for (const other of run.procs) other.kill("SIGKILL");
          return code;
        }),
      ),
    );
    const output = await new Response(run.reporter.stdout as ReadableStream).text();
    if (codes.some((code) => code !== 0))
      throw new Error(`${c.name} ${size} B: exit codes ${codes.join(", ")} (137: SIGKILL, after a timeout or a partner's failure)`);
    const report = JSON.parse(output.trim().split("\n").at(-1)!) as Report;
    if (report.messages !== count || report.errors !== 0)
      throw new Error(`${c.name} ${size} B: received ${report.messages}/${count}, ${report.errors} bad: ${report.firstError}`);
    const leftover = run.cleanup();
    if (leftover) warnings.push(`${c.name} ${size} B: ${leftover}`);
    const seconds = report.elapsedMs / 1000;
    return { msgPerSec: count / seconds, mbPerSec: (count * size) / seconds / 1e6 };
  } finally {
    for (const p of run.procs) if (p.exitCode === null) p.kill("SIGKILL");
  }
}

function machine(): string {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? "unknown";
  const load = loadavg().map((l) => l.toFixed(2)).join(" ");
  return `CPU: ${model}, ${cpus().length} cores; Linux ${release()}; Bun ${Bun.version}; load average ${load}`;
}

const fmt = (n: number, digits = 0) => n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
const median = (xs: Result[]) => [...xs].sort((a, b) => a.msgPerSec - b.msgPerSec)[xs.length >> 1];

console.log(machine());
console.log(`psyne C core: ${libraryPath}${process.env.PSYNE_LIB ? " (PSYNE_LIB)" : ""}, sha256 ${librarySha}...`);
console.log(`${REPEATS} runs of each, interleaved; median by msg/s; MB = 10^6 bytes of payload; every message checked\n`);

const results = new Map<string, Result[]>();
const key = (c: Contestant, size: number) => `${c.name}|${size}`;
try {
  // repeats outermost, so a slow spell of the machine hits every contestant alike
  for (let r = 1; r <= REPEATS; r++)
    for (const size of SIZES)
      for (const c of contestants) {
        const result = await runOnce(c, size);
        results.set(key(c, size), [...(results.get(key(c, size)) ?? []), result]);
        console.log(`  run ${r}: ${c.name.padEnd(36)} ${String(size).padStart(5)} B  ${fmt(result.msgPerSec).padStart(12)} msg/s`);
      }
} finally {
  // also after a failed run: leave no socket and no segment of ours behind
  rmSync(workDir, { recursive: true, force: true });
  for (const f of readdirSync("/dev/shm").filter((f) => f.startsWith(`psyne.${runId}`))) removeChannel(f.slice("psyne.".length));
}

const rows: string[][] = [["contestant", "size", "msg/s", "MB/s", "psyne / this"]];
for (const size of SIZES) {
  const psyneRate = median(results.get(key(psyne, size))!).msgPerSec;
  for (const c of contestants) {
    const m = median(results.get(key(c, size))!);
    rows.push([c.name, size === 4096 ? "4 KiB" : `${size} B`, fmt(m.msgPerSec), fmt(m.mbPerSec), c === psyne ? "" : `${fmt(psyneRate / m.msgPerSec, 2)}x`]);
  }
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
console.log("");
for (const [i, row] of rows.entries()) {
  console.log(`| ${row.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join(" | ")} |`);
  if (i === 0) console.log(`|${widths.map((w, j) => (j === 0 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`);
}

const ipc64 = Math.max(...contestants.filter((c) => c.name.startsWith("Bun IPC")).map((c) => median(results.get(key(c, 64))!).msgPerSec));
const ratio = median(results.get(key(psyne, 64))!).msgPerSec / ipc64;
console.log(`\ntarget: psyne SPSC at 64 B >= 5x Bun IPC (its faster mode): ${fmt(ratio, 2)}x, ${ratio >= 5 ? "met" : "NOT met"}`);
for (const w of warnings) console.log(`warning: ${w}`);
console.log(`no segment of this run is left in /dev/shm; load average now ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
