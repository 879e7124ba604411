// Multi-process throughput at 64 B, 4 KiB, 64 KiB and 1 MiB: psyne (one send per message, and the
// batch API) against a plain C shared-memory ring (the hardware limit), Bun's built-in IPC, a Unix
// domain socket, TCP on loopback and Worker postMessage. Every contestant is a producer and a
// consumer (two processes; Worker: two threads of one process), and the consumer checks every
// message (bench/peers/pattern.ts); a run with a missing or bad message fails the benchmark. This
// process only spawns, waits and reports: it stays idle while a pair runs. Then a long psyne run
// (10 M messages at 64 B, batch API) for the RSS of both processes, the targets, and
// bench/throughput.svg drawn from the medians.
//
//   bun bench/throughput.ts                      (or: bun run bench, bunx psyne bench)
//   BENCH_SCALE=0.1 bun bench/throughput.ts      a quick smoke run: a tenth of the messages
//   BENCH_ONLY=psyne,c-ring BENCH_SIZES=64,4096 bun bench/throughput.ts   some contestants / sizes
//     ids: psyne psyne-batch c-ring ipc-json ipc-advanced unix tcp worker-copy worker-transfer,
//     memory (the RSS run), raw-ring (diagnostic: psyne's C ring through bare FFI calls; also
//     BENCH_DIAGNOSTIC=1). The chart is written only by a full run, or to BENCH_SVG=path.
//   PSYNE_LIB=/path/to/libpsyne.so bun bench/throughput.ts   measure another build of the C core
// The C ring is compiled with the Zig dev dependency or a zig on PATH; without either (an installed
// package) it shows as "not run: needs zig" and the others run.
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanUp, findZig, fmt, lastJson, loadAverage, machine, type Peer, peerPath, printTable, runId, snapshotLibrary, spawnPeer, sweepSegments } from "./peers/harness.ts";
import type { Report } from "./peers/pattern.ts";

const REPEATS = 3;
const ALL_SIZES = [64, 4096, 65536, 1 << 20];
const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const RUN_SECONDS = 0.5; // each run's messages are sized for about this long on a quiet machine
const TIMEOUT_MS = 60_000; // per process
const MEMORY_MESSAGES = Math.max(100_000, Math.round(10_000_000 * SCALE));
const MEMORY_WARMUP = Math.round(MEMORY_MESSAGES / 10);
const GROWTH_LIMIT = 1 << 20; // RSS growth after warm-up that counts as growth

const { workDir, library, source, sha } = snapshotLibrary();
const { removeChannel } = await import("../src/index.ts"); // loads the snapshot

const zig = findZig();
const cRingBinary = join(workDir, "c-ring");
const bun = process.execPath;
let runNumber = 0;

/** Ring size for psyne and the C ring: 4 MiB, 16 MiB for 1 MiB messages (room for a dozen). */
const ringBytes = (size: number) => (size >= 1 << 20 ? 16 << 20 : 4 << 20);
/** Messages per sendBatch() call: 256 small ones, up to 256 KiB per batch, at least one. */
const batchOf = (size: number) => Math.max(1, Math.min(256, Math.floor((256 << 10) / size)));

interface Contestant {
  id: string;
  name: string;
  /** Rough msg/s on a quiet machine at each size, only to size the runs (RUN_SECONDS each). */
  rate: Record<number, number>;
  /** Starts one run; the first peer prints the Report. */
  start(size: number, count: number): Peer[] | Promise<Peer[]>;
  psyne?: boolean; // leaves a segment to check for
}

const psyneArgs = (how: "send" | "batch", name: string, size: number, count: number, warmup: number) => [
  how,
  name,
  String(size),
  String(count),
  String(TIMEOUT_MS),
  String(ringBytes(size)),
  String(batchOf(size)),
  String(warmup),
];
const psynePair = (how: "send" | "batch", size: number, count: number, warmup = Math.floor(count / 10)) => {
  const args = psyneArgs(how, `${runId}-${++runNumber}`, size, count, warmup);
  const consumer = spawnPeer([bun, peerPath("psyne-consumer.ts"), ...args], TIMEOUT_MS);
  return [consumer, spawnPeer([bun, peerPath("psyne-producer.ts"), ...args], TIMEOUT_MS)];
};

const psyneSend: Contestant = {
  id: "psyne",
  name: "psyne, send() per message",
  rate: { 64: 8e6, 4096: 2.5e6, 65536: 150e3, 1048576: 6e3 },
  start: (size, count) => psynePair("send", size, count),
  psyne: true,
};
const psyneBatch: Contestant = {
  id: "psyne-batch",
  name: "psyne, sendBatch/drainBytes",
  rate: { 64: 35e6, 4096: 3e6, 65536: 150e3, 1048576: 6e3 },
  start: (size, count) => psynePair("batch", size, count),
  psyne: true,
};
const cRing: Contestant = {
  id: "c-ring",
  name: "C SPSC ring (shared memory)",
  rate: { 64: 30e6, 4096: 3e6, 65536: 200e3, 1048576: 8e3 },
  start: (size, count) => [spawnPeer([cRingBinary, String(size), String(count), String(ringBytes(size)), String(TIMEOUT_MS / 1000)], TIMEOUT_MS)],
};
const bunIpc = (serialization: "json" | "advanced", rate: Record<number, number>): Contestant => ({
  id: `ipc-${serialization}`,
  name: `Bun IPC (${serialization === "json" ? "json, string" : "advanced, Uint8Array"})`,
  rate,
  // the consumer spawns the producer as its IPC child (with the same timeout)
  start: (size, count) => [spawnPeer([bun, peerPath("ipc-consumer.ts"), serialization, String(size), String(count), String(TIMEOUT_MS)], TIMEOUT_MS)],
});
const socket = (kind: "unix" | "tcp", rate: Record<number, number>): Contestant => ({
  id: kind,
  name: kind === "unix" ? "Unix socket (64 KiB writes)" : "TCP 127.0.0.1 (64 KiB writes)",
  rate,
  async start(size, count) {
    const rest = [String(size), String(count), String(TIMEOUT_MS)];
    const consumer = spawnPeer([bun, peerPath("socket-consumer.ts"), kind === "unix" ? `unix:${join(workDir, `${++runNumber}.sock`)}` : "tcp", ...rest], TIMEOUT_MS);
    await consumer.waitFor("\n"); // "listening ADDRESS"
    const address = /^listening (\S+)$/m.exec(consumer.stdout())![1]!;
    return [consumer, spawnPeer([bun, peerPath("socket-producer.ts"), address, ...rest], TIMEOUT_MS)];
  },
});
const worker = (mode: "copy" | "transfer", rate: Record<number, number>): Contestant => ({
  id: `worker-${mode}`,
  name: `Worker postMessage (${mode === "copy" ? "copy" : "transfer"})`,
  rate,
  start: (size, count) => [spawnPeer([bun, peerPath("worker-consumer.ts"), mode, String(size), String(count), String(TIMEOUT_MS)], TIMEOUT_MS)],
});
const rawRing: Contestant = {
  id: "raw-ring",
  name: "diagnostic: psyne C ring, bare FFI",
  rate: psyneBatch.rate,
  start(size, count) {
    const args = [`${runId}-${++runNumber}`, String(size), String(count), String(TIMEOUT_MS), String(ringBytes(size))];
    const consumer = spawnPeer([bun, peerPath("raw-ring.ts"), "consumer", ...args], TIMEOUT_MS);
    return [consumer, spawnPeer([bun, peerPath("raw-ring.ts"), "producer", ...args], TIMEOUT_MS)];
  },
  psyne: true,
};

const workerCopy = worker("copy", { 64: 1e6, 4096: 500e3, 65536: 40e3, 1048576: 2.5e3 });
const workerTransfer = worker("transfer", { 64: 600e3, 4096: 500e3, 65536: 200e3, 1048576: 6e3 });
const allContestants = [
  psyneSend,
  psyneBatch,
  cRing,
  bunIpc("json", { 64: 2.4e6, 4096: 200e3, 65536: 15e3, 1048576: 800 }),
  bunIpc("advanced", { 64: 1.5e6, 4096: 370e3, 65536: 40e3, 1048576: 2e3 }),
  socket("unix", { 64: 12e6, 4096: 900e3, 65536: 60e3, 1048576: 3e3 }),
  socket("tcp", { 64: 8e6, 4096: 600e3, 65536: 40e3, 1048576: 2.5e3 }),
  workerCopy,
  workerTransfer,
];

const only = process.env.BENCH_ONLY?.split(",").map((s) => s.trim()).filter(Boolean);
const known = [...allContestants.map((c) => c.id), rawRing.id, "memory"];
for (const id of only ?? []) if (!known.includes(id)) throw new Error(`BENCH_ONLY: unknown id "${id}"; known: ${known.join(" ")}`);
const contestants = [...allContestants, ...(process.env.BENCH_DIAGNOSTIC === "1" || only?.includes(rawRing.id) ? [rawRing] : [])].filter(
  (c) => !only || only.includes(c.id),
);
const sizes = process.env.BENCH_SIZES ? process.env.BENCH_SIZES.split(",").map(Number) : ALL_SIZES;
for (const size of sizes) if (!ALL_SIZES.includes(size)) throw new Error(`BENCH_SIZES: ${size} is not one of ${ALL_SIZES.join(",")}`);
const runMemory = !only || only.includes("memory");
/** Contestants that cannot run here, with the reason; the table shows them as not run. */
const notRun = new Map<Contestant, string>();
const fullRun = !only && !process.env.BENCH_SIZES && SCALE >= 1;

const sizeLabel = (size: number) => (size >= 1 << 20 ? `${size >> 20} MiB` : size >= 1024 ? `${size >> 10} KiB` : `${size} B`);
const countFor = (c: Contestant, size: number) => Math.max(size >= 65536 ? 64 : 1000, Math.round(c.rate[size]! * RUN_SECONDS * SCALE));

/** Waits for every peer of a run; the first to fail takes the others down at once. */
async function settle(what: string, peers: Peer[]): Promise<{ code: number; out: string }[]> {
  let failed: string | undefined;
  const results = await Promise.all(
    peers.map(async (p, i) => {
      const r = await p.done;
      if (r.code !== 0 && !failed) {
        failed = `${what}: ${i ? "the producer" : "the consumer"} failed first (exit code ${r.code}${r.code === 137 ? ": SIGKILL, its timeout?" : ""})`;
        for (const other of peers) other.proc.kill("SIGKILL");
      }
      return r;
    }),
  );
  if (failed) throw new Error(failed);
  return results;
}

/** Compiles the C ring's peer; says why not when it cannot (no zig, as in an installed package). */
function buildCRing(): string | undefined {
  if (!zig) return "needs zig";
  try {
    execFileSync(zig, ["cc", "-O2", "-o", cRingBinary, peerPath("c-ring.c")], { stdio: "inherit", timeout: 120_000 });
  } catch (error) {
    return `zig cc failed: ${(error as Error).message.split("\n")[0]}`;
  }
}

interface Result {
  msgPerSec: number;
  mbPerSec: number;
}

async function runOnce(c: Contestant, size: number): Promise<Result> {
  const count = countFor(c, size);
  const what = `${c.name} ${sizeLabel(size)}`;
  const results = await settle(what, await c.start(size, count));
  const report = lastJson<Report>(what, results[0]!);
  if (report.messages !== count || report.errors !== 0)
    throw new Error(`${what}: received ${report.messages}/${count}, ${report.errors} bad: ${report.firstError}`);
  if (c.psyne) {
    const left = sweepSegments(removeChannel);
    if (left) warnings.push(`${what}: ${left} segment(s) left in /dev/shm (removed)`);
  }
  const seconds = report.elapsedMs / 1000;
  return { msgPerSec: count / seconds, mbPerSec: (count * size) / seconds / 1e6 };
}

interface Memory {
  consumer: number[];
  producer: number[];
  msgPerSec: number;
}

/** One long psyne batch run at 64 B; both processes report RSS at start, after warm-up, at the end. */
async function memoryRun(): Promise<Memory> {
  const what = `memory run (psyne batch, 64 B, ${fmt(MEMORY_MESSAGES)} messages)`;
  const results = await settle(what, psynePair("batch", 64, MEMORY_MESSAGES, MEMORY_WARMUP));
  const report = lastJson<Report & { rss: number[] }>(what, results[0]!);
  if (report.messages !== MEMORY_MESSAGES || report.errors !== 0) throw new Error(`${what}: received ${report.messages}, ${report.errors} bad: ${report.firstError}`);
  const producer = lastJson<{ rss: number[] }>(`${what} producer`, results[1]!);
  const left = sweepSegments(removeChannel);
  if (left) warnings.push(`${what}: ${left} segment(s) left in /dev/shm (removed)`);
  return { consumer: report.rss, producer: producer.rss, msgPerSec: MEMORY_MESSAGES / (report.elapsedMs / 1000) };
}

const warnings: string[] = [];
const results = new Map<string, Result[]>();
const key = (c: Contestant, size: number) => `${c.id}|${size}`;
const started = performance.now();
const machineLine = machine();
console.log(machineLine);
console.log(`psyne C core: ${source}, sha256 ${sha}... (all peers load a copy: ${library})`);
console.log(
  `${REPEATS} runs of each, interleaved; median by msg/s; MB = 10^6 bytes of payload; every message checked; ` +
    `rings ${ringBytes(64) >> 20} MiB (${ringBytes(1 << 20) >> 20} MiB at 1 MiB); sendBatch of ${sizes.map((s) => `${batchOf(s)} at ${sizeLabel(s)}`).join(", ")}\n`,
);

let memory: Memory | undefined;
try {
  const cRingProblem = contestants.includes(cRing) ? buildCRing() : undefined;
  if (cRingProblem) {
    notRun.set(cRing, cRingProblem);
    warnings.push(`${cRing.name}: not run: ${cRingProblem}`);
  }
  // repeats outermost, so a slow spell of the machine hits every contestant alike
  for (let r = 1; r <= REPEATS; r++)
    for (const size of sizes)
      for (const c of contestants) {
        if (notRun.has(c)) continue;
        const result = await runOnce(c, size);
        results.set(key(c, size), [...(results.get(key(c, size)) ?? []), result]);
        console.log(
          `  run ${r}: ${c.name.padEnd(36)} ${sizeLabel(size).padStart(6)}  ${fmt(result.msgPerSec).padStart(12)} msg/s ${fmt(result.mbPerSec).padStart(8)} MB/s`,
        );
      }
  if (runMemory) memory = await memoryRun();
} catch (error) {
  // say what failed, and still whether anything was left behind
  console.error(`\nbenchmark failed: ${(error as Error).message}`);
  console.log(await cleanUp(workDir, removeChannel));
  process.exit(1);
}
const finalLine = await cleanUp(workDir, removeChannel);

const median = (c: Contestant, size: number): Result | undefined => {
  const runs = results.get(key(c, size));
  return runs && [...runs].sort((a, b) => a.msgPerSec - b.msgPerSec)[runs.length >> 1];
};
const spread = (c: Contestant, size: number) => {
  const rates = results.get(key(c, size))!.map((r) => r.msgPerSec);
  return `±${fmt((50 * (Math.max(...rates) - Math.min(...rates))) / median(c, size)!.msgPerSec)}%`;
};
const ratio = (a: Result | undefined, b: Result) => (a ? `${fmt(a.msgPerSec / b.msgPerSec, 2)}x` : "-");

console.log("");
const header = ["contestant", "size", "msg/s", "MB/s", "spread", "psyne / this", "psyne batch / this"];
const rows: string[][] = [header];
for (const size of sizes)
  for (const c of contestants) {
    const reason = notRun.get(c);
    if (reason) {
      rows.push([c.name, sizeLabel(size), `not run: ${reason}`, "-", "-", "-", "-"]);
      continue;
    }
    const m = median(c, size)!;
    rows.push([c.name, sizeLabel(size), fmt(m.msgPerSec), fmt(m.mbPerSec), spread(c, size), ratio(median(psyneSend, size), m), ratio(median(psyneBatch, size), m)]);
  }
printTable(rows);
console.log("spread: half the range of the three runs, relative to the median; ratios compare msg/s (the same as MB/s at one size)");

// memory
if (memory) {
  const mib = (b: number) => `${fmt(b / 2 ** 20, 1)} MiB`;
  const growth = (rss: number[]) => rss.at(-1)! - rss.at(-2)!;
  console.log(`\nmemory: ${memory.consumer.length > 2 ? "" : "(no warm-up sample) "}${fmt(MEMORY_MESSAGES)} messages of 64 B, psyne batch API, ${fmt(memory.msgPerSec)} msg/s`);
  printTable([
    ["RSS", "at start", `after ${fmt(MEMORY_WARMUP)} (warm-up)`, "at end", "end - warm-up", "verdict"],
    ...(["consumer", "producer"] as const).map((side) => {
      const rss = memory![side];
      const g = growth(rss);
      return [side, mib(rss[0]!), rss.length > 2 ? mib(rss[1]!) : "-", mib(rss.at(-1)!), `${g >= 0 ? "+" : ""}${mib(g)}`, g > GROWTH_LIMIT ? "GROWTH" : "no growth"];
    }),
  ]);
  console.log("(RSS includes the ring pages this process touched, so start to warm-up grows by up to the ring's 4 MiB plus JIT and heap warm-up)");
}

// targets
const verdict = (ok: boolean) => (ok ? "met" : "NOT met");
const rate = (c: Contestant, size: number) => median(c, size)?.msgPerSec;
const bandwidth = (c: Contestant, size: number) => median(c, size)?.mbPerSec;
const targets: string[] = [];
const target = (label: string, value: number | undefined, goal: number | undefined, show: (v: number) => string, goalText: string) =>
  targets.push(
    value === undefined || goal === undefined
      ? `  ${label}: not measured in this run`
      : `  ${label}: ${show(value)} (target ${goalText}), ${verdict(value >= goal)}`,
  );
const mps = (v: number) => `${fmt(v / 1e6, 2)} M msg/s`;
target("psyne 64 B, send() per message >= 10 M msg/s", rate(psyneSend, 64), 10e6, mps, "10 M");
target("psyne 64 B, batch API >= 30 M msg/s", rate(psyneBatch, 64), 30e6, mps, "30 M");
target("psyne 4 KiB, send() per message >= 2 M msg/s", rate(psyneSend, 4096), 2e6, mps, "2 M");
target("psyne 4 KiB, batch API >= 2 M msg/s", rate(psyneBatch, 4096), 2e6, mps, "2 M");
const cBandwidth = bandwidth(cRing, 1 << 20);
for (const c of [psyneSend, psyneBatch]) {
  const b = bandwidth(c, 1 << 20);
  target(
    `${c.name} 1 MiB >= 25% of the C ring's bandwidth`,
    b !== undefined && cBandwidth ? b / cBandwidth : undefined,
    0.25,
    (v) => `${fmt(100 * v)}% (${fmt(b!)} vs ${fmt(cBandwidth!)} MB/s)`,
    "25%",
  );
}
// both Worker modes: copy is what postMessage does by default, transfer what it does at best
for (const w of [workerCopy, workerTransfer])
  for (const c of [psyneSend, psyneBatch]) {
    const [b, wb] = [bandwidth(c, 1 << 20), bandwidth(w, 1 << 20)];
    target(`${c.name} 1 MiB >= 3x ${w.name}`, b !== undefined && wb ? b / wb : undefined, 3, (v) => `${fmt(v, 2)}x (${fmt(b!)} vs ${fmt(wb!)} MB/s)`, "3x");
  }
console.log("\ntargets (medians of this run):");
for (const t of targets) console.log(t);

// chart
const svgPath = process.env.BENCH_SVG ?? (fullRun && notRun.size === 0 ? new URL("./throughput.svg", import.meta.url).pathname : undefined);
if (svgPath) {
  const date = new Date().toISOString().slice(0, 10);
  const cpu = /CPU: ([^,]*, \d+ cores)/.exec(machineLine)?.[1] ?? "";
  writeFileSync(svgPath, chart("Throughput between two processes, every message checked", `${date}, ${cpu}, Bun ${Bun.version}`));
  console.log(`\nchart: ${svgPath}`);
} else console.log("\nchart: not written (a partial run; set BENCH_SVG=path to write one)");

for (const w of warnings) console.log(`warning: ${w}`);
console.log(`suite took ${fmt((performance.now() - started) / 1000, 1)} s`);
console.log(finalLine);

/** A line chart of the medians, hand-written SVG: GB/s on a log scale, sizes on the x axis. */
function chart(title: string, subtitle: string): string {
  const escape = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const colors = ["#d62728", "#ff7f0e", "#111111", "#1f77b4", "#17becf", "#2ca02c", "#98df8a", "#9467bd", "#e377c2", "#8c564b"];
  const [W, H, left, right, top, bottom] = [980, 520, 70, 640, 60, 460];
  const shown = contestants.filter((c) => !notRun.has(c));
  const values = shown.flatMap((c) => sizes.map((s) => median(c, s)!.mbPerSec / 1000));
  const lo = Math.floor(Math.log10(Math.min(...values)));
  const hi = Math.ceil(Math.log10(Math.max(...values)));
  const y = (gbs: number) => bottom - ((Math.log10(gbs) - lo) / (hi - lo)) * (bottom - top);
  const x = (i: number) => left + 40 + (i * (right - left - 80)) / Math.max(1, sizes.length - 1);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${W / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escape(title)}</text>`,
    `<text x="${W / 2}" y="43" text-anchor="middle" fill="#333">${escape(subtitle)}; median of ${REPEATS} runs; payload GB/s (10^9 bytes), log scale</text>`,
  ];
  for (let d = lo; d <= hi; d++) {
    for (const k of d < hi ? [1, 2, 5] : [1]) {
      const v = k * 10 ** d;
      const major = k === 1;
      out.push(`<line x1="${left}" x2="${right}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="${major ? "#bbb" : "#eee"}"/>`);
      if (major || hi - lo <= 3)
        out.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" fill="${major ? "#000" : "#888"}">${v >= 1 ? v : v.toPrecision(1)}</text>`);
    }
  }
  out.push(`<text transform="translate(18 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle">GB/s</text>`);
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${bottom}" stroke="#000"/><line x1="${left}" x2="${right}" y1="${bottom}" y2="${bottom}" stroke="#000"/>`);
  sizes.forEach((s, i) => out.push(`<text x="${x(i)}" y="${bottom + 20}" text-anchor="middle">${sizeLabel(s)}</text>`));
  out.push(`<text x="${(left + right) / 2}" y="${bottom + 42}" text-anchor="middle">message size</text>`);
  shown.forEach((c, n) => {
    const color = colors[n % colors.length];
    const width = c.psyne ? 3 : c === cRing ? 2.5 : 1.5;
    const dash = c === cRing ? ` stroke-dasharray="6 4"` : "";
    const points = sizes.map((s, i) => `${x(i).toFixed(1)},${y(median(c, s)!.mbPerSec / 1000).toFixed(1)}`);
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="${width}"${dash} points="${points.join(" ")}"/>`);
    for (const p of points) out.push(`<circle cx="${p.split(",")[0]}" cy="${p.split(",")[1]}" r="3.5" fill="${color}"/>`);
    const ly = top + 10 + n * 22;
    out.push(`<line x1="${right + 20}" x2="${right + 50}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="${width}"${dash}/>`);
    out.push(`<text x="${right + 58}" y="${ly + 4}">${escape(c.name)}</text>`);
  });
  out.push(`<text x="${right + 20}" y="${top + 10 + shown.length * 22 + 10}" fill="#555">${escape(`load average ${loadAverage()}`)}</text>`);
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
