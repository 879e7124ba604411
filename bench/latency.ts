// One-way latency between two processes, by ping-pong (one-way = round trip / 2): psyne waiting
// three ways (busy-polling receive(), parked in await recv(), blocked in receiveSync()) beside plain
// C over shared memory (futex wake-ups: the kernel's floor for a parked wake-up; and busy-polling),
// Bun's built-in IPC and a Unix domain socket. Every reply is checked for the right sequence
// number. Then the CPU a psyne receiver parked in await recv() uses while idle for about 3 s.
//
// Where the two processes run decides what a parked wake-up costs: across cores it is an
// inter-processor wake-up (about 25-30 us on this VM), on one core a context switch (about 1 us),
// and unpinned the scheduler picks either, run by run. So each pair is pinned (taskset): first to
// two different cores (the main table and the targets), then parked rows again on one core.
// This process only spawns, waits and reports (scripts in bench/peers/lat-*).
//
//   bun bench/latency.ts      (BENCH_SCALE=0.1: a quick smoke run with a tenth of the round trips;
//   BENCH_ONLY="await recv(),Bun IPC": only rows whose name contains one of these, beside the C
//   futex floor; BENCH_REPEATS=N: N runs of each row instead of 3; BENCH_IDLE=0: no idle run)
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { cleanUp, findZig, fmt, lastJson, machine, type Peer, peerPath, printTable, runId, snapshotLibrary, spawnPeer, sweepSegments } from "./peers/harness.ts";
import type { LatencyReport } from "./peers/lat-common.ts";

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const ROUNDS = Math.max(1000, Math.round(20_000 * SCALE));
const WARMUP = Math.max(200, Math.round(2_000 * SCALE));
// rows with 1 ms between round trips (each takes over 1 ms): fewer of them
const GAP_MS = 1;
const SPACED_ROUNDS = Math.max(300, Math.round(3_000 * SCALE));
const SPACED_WARMUP = Math.max(50, Math.round(300 * SCALE));
const IDLE_MS = 3000;
const TIMEOUT_MS = 60_000;
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3); // runs of each row, interleaved; the table shows the run with the median p50
const APART = ["0", "1"]; // CPUs of the pinger and the ponger
const TOGETHER = ["0", "0"];

const { workDir, library, source, sha } = snapshotLibrary();
const { createChannel, Int32Vector, removeChannel } = await import("../src/index.ts"); // loads the snapshot

const zig = findZig();
const cPingPong = join(workDir, "lat-pingpong");

const bun = process.execPath;
const counts = [String(ROUNDS), String(WARMUP), String(TIMEOUT_MS)];
const onCpu = (cpu: string, cmd: string[]) => spawnPeer(["taskset", "-c", cpu, ...cmd], TIMEOUT_MS);
let runNumber = 0;

interface Run {
  reporter: Peer; // prints the LatencyReport
  partners: Peer[];
}
interface Row {
  name: string;
  parked: boolean; // waits in the kernel (else it spins, which on one core makes no sense)
  spaced?: boolean; // GAP_MS between round trips: SPACED_ROUNDS of them
  run(cpus: string[]): Run | Promise<Run>;
}
const roundsOf = (row: Row) => (row.spaced ? SPACED_ROUNDS : ROUNDS);
const countsOf = (spaced: boolean) => (spaced ? [String(SPACED_ROUNDS), String(SPACED_WARMUP), String(TIMEOUT_MS)] : counts);

const cPair = (how: "futex" | "spin", name: string): Row => ({
  name,
  parked: how === "futex",
  run: (cpus) => ({ reporter: spawnPeer([cPingPong, how, ...counts.slice(0, 2), String(TIMEOUT_MS / 1000), ...cpus], TIMEOUT_MS), partners: [] }),
});
// spinFirst: psyne's default (recv/receiveSync poll for PSYNE_SPIN_US = 20 us before parking);
// without it every wait parks at once, which is what the parked-latency targets are about.
// wake: how a parked await recv() is woken: "bell" (the default on Linux: the sender writes to a
// socket the receiver's event loop watches) or "thread" (a waiter thread woken by a futex calls
// back into the event loop). spaced: GAP_MS between round trips.
const psyne = (how: "poll" | "recv" | "sync", name: string, { spinFirst = false, wake = "bell", spaced = false } = {}): Row => ({
  name,
  parked: how !== "poll",
  spaced,
  run(cpus) {
    const channel = `${runId}-${++runNumber}`;
    const env = ["env", `PSYNE_SPIN_US=${spinFirst ? 20 : 0}`, `PSYNE_WAKE=${wake}`, `LAT_GAP_MS=${spaced ? GAP_MS : 0}`];
    const cmd = (side: string) => [...env, bun, peerPath("lat-psyne.ts"), side, channel, how, ...countsOf(spaced)];
    const partner = onCpu(cpus[1]!, cmd("pong"));
    return { reporter: onCpu(cpus[0]!, cmd("ping")), partners: [partner] };
  },
});
const ipc = (spaced: boolean): Row => ({
  name: `Bun IPC (json)${spaced ? `, ${GAP_MS} ms apart` : ""}`,
  parked: true,
  spaced,
  run: (cpus) => ({
    reporter: onCpu(cpus[0]!, ["env", `LAT_GAP_MS=${spaced ? GAP_MS : 0}`, bun, peerPath("lat-ipc.ts"), ...countsOf(spaced), cpus[1]!]),
    partners: [],
  }),
});

const cFutex = cPair("futex", "C, futex wake-ups (floor)");
const psynePoll = psyne("poll", "psyne, busy-poll receive()");
const psyneRecv = psyne("recv", "psyne, await recv(), parking at once");
const psyneRecvThread = psyne("recv", "psyne, await recv(), parking at once, waiter thread", { wake: "thread" });
const psyneRecvDefault = psyne("recv", "psyne, await recv() (default: 20 us spin, then park)", { spinFirst: true });
const bunIpc = ipc(false);
const spacedRecv = psyne("recv", `psyne, await recv(), parking at once, ${GAP_MS} ms apart`, { spaced: true });
const spacedRecvThread = psyne("recv", `psyne, await recv(), waiter thread, ${GAP_MS} ms apart`, { wake: "thread", spaced: true });
const spacedRecvDefault = psyne("recv", `psyne, await recv() (default spin), ${GAP_MS} ms apart`, { spinFirst: true, spaced: true });
const spacedIpc = ipc(true);
const allRows: Row[] = [
  cFutex,
  cPair("spin", "C, busy-poll"),
  psynePoll,
  psyneRecv,
  psyneRecvThread,
  psyne("sync", "psyne, receiveSync(), parking at once"),
  psyneRecvDefault,
  bunIpc,
  spacedRecv,
  spacedRecvThread,
  spacedRecvDefault,
  spacedIpc,
  {
    name: "Unix socket",
    parked: true,
    async run(cpus) {
      const path = join(workDir, `${++runNumber}.sock`);
      const partner = onCpu(cpus[1]!, [bun, peerPath("lat-unix.ts"), "echo", path, String(TIMEOUT_MS)]);
      await partner.waitFor("ready");
      return { reporter: onCpu(cpus[0]!, [bun, peerPath("lat-unix.ts"), "ping", path, ...counts]), partners: [partner] };
    },
  },
];

const only = process.env.BENCH_ONLY?.split(",").map((s) => s.trim()).filter(Boolean);
const rows = allRows.filter((row) => row === cFutex || !only || only.some((part) => row.name.includes(part)));
const runIdle = process.env.BENCH_IDLE !== "0";

async function measure(row: Row, cpus: string[]): Promise<LatencyReport> {
  const { reporter, partners } = await row.run(cpus);
  const all = [reporter, ...partners];
  // a peer that fails takes its partner down at once; every peer also has its own timeout
  let failed: string | undefined;
  const results = await Promise.all(
    all.map(async (p, i) => {
      const r = await p.done;
      if (r.code !== 0 && !failed) {
        failed = `${row.name}: the ${i ? "partner" : "pinger"} failed first (exit code ${r.code}${r.code === 137 ? ": SIGKILL, its timeout?" : ""})`;
        for (const other of all) other.proc.kill("SIGKILL");
      }
      return r;
    }),
  );
  if (failed) throw new Error(failed);
  const report = lastJson<LatencyReport>(row.name, results[0]!);
  if (report.errors || report.rounds !== roundsOf(row)) throw new Error(`${row.name}: ${report.rounds}/${roundsOf(row)} rounds, ${report.errors} bad: ${report.firstError}`);
  const left = sweepSegments(removeChannel);
  console.log(`  cpus ${cpus.join(",")}  ${row.name.padEnd(28)} p50 ${fmt(report.p50 / 1000, 2).padStart(7)} us${left ? `  (warning: ${left} segment(s) left)` : ""}`);
  return report;
}

interface Idle {
  percent: number;
  wallMs: number;
  wakeupsPerSec: number;
}
type IdleReport = { cpuMs: number; wallMs: number; switches: number; value: number | null };
const idleOf = (r: IdleReport): Idle => ({ percent: (100 * r.cpuMs) / r.wallMs, wallMs: r.wallMs, wakeupsPerSec: r.switches / (r.wallMs / 1000) });

/** CPU of a psyne receiver parked in await recv() for IDLE_MS, then woken by one message; beside
 * it, a Bun process in await Bun.sleep(IDLE_MS): what any idle Bun process costs. */
async function idleCpu(): Promise<{ psyne: Idle; baseline: Idle }> {
  const name = `${runId}-${++runNumber}`;
  const waiter = spawnPeer([bun, peerPath("lat-psyne.ts"), "idle", name, String(IDLE_MS + 20_000)], TIMEOUT_MS);
  const sleeper = spawnPeer([bun, peerPath("lat-psyne.ts"), "sleep", String(IDLE_MS)], TIMEOUT_MS);
  await Promise.all([waiter.waitFor("ready"), sleeper.waitFor("ready")]);
  await Bun.sleep(IDLE_MS);
  const ch = createChannel(`ipc://${name}-ping`, { role: "producer" });
  const v = new Int32Vector(ch, 1);
  v[0] = 42;
  ch.send(v);
  ch.close();
  const r = lastJson<IdleReport>("idle receiver", await waiter.done);
  if (r.value !== 42) throw new Error(`idle receiver got ${r.value}, expected 42`);
  sweepSegments(removeChannel);
  return { psyne: idleOf(r), baseline: idleOf(lastJson<IdleReport>("idle Bun process", await sleeper.done)) };
}

console.log(machine());
console.log(`psyne C core: ${source}, sha256 ${sha}... (all peers load a copy: ${library})`);
console.log(`${fmt(ROUNDS)} round trips per run after ${fmt(WARMUP)} warm-up ones (${fmt(SPACED_ROUNDS)} after ${fmt(SPACED_WARMUP)} for rows ${GAP_MS} ms apart); one-way = round trip / 2; every reply checked`);
console.log(`${REPEATS} runs of each row, interleaved; each row shows its run with the median p50\n`);

const apart = new Map<Row, LatencyReport[]>();
const together = new Map<Row, LatencyReport[]>();
const add = (to: Map<Row, LatencyReport[]>, row: Row, r: LatencyReport) => to.set(row, [...(to.get(row) ?? []), r]);
let idle: { psyne: Idle; baseline: Idle } | undefined;
try {
  if (!zig) throw new Error("the C ping-pong baseline needs zig: the Zig dev dependency (npm install in a clone) or zig on PATH");
  execFileSync(zig, ["cc", "-O2", "-o", cPingPong, peerPath("lat-pingpong.c")], { stdio: "inherit", timeout: 120_000 });
  execFileSync("taskset", ["-c", "0", "true"]); // pinning is part of the method: fail early without it
  // repeats outermost, so a slow spell of the machine hits every row alike
  for (let r = 0; r < REPEATS; r++) {
    for (const row of rows) add(apart, row, await measure(row, APART));
    for (const row of rows.filter((r) => r.parked && !r.spaced)) add(together, row, await measure(row, TOGETHER));
  }
  if (runIdle) idle = await idleCpu();
} catch (error) {
  // say what failed, and still whether anything was left behind
  console.error(`\nbenchmark failed: ${(error as Error).message}`);
  console.log(await cleanUp(workDir, removeChannel));
  process.exit(1);
}
const finalLine = await cleanUp(workDir, removeChannel);

const us = (ns: number, digits = 2) => fmt(ns / 1000, digits);
const ratio = (x: number) => `${fmt(x, x < 0.1 ? 3 : 2)}x`;
const median = (runs?: LatencyReport[]) => runs && [...runs].sort((a, b) => a.p50 - b.p50)[runs.length >> 1];
const floor = median(apart.get(cFutex))!.p50;
const floorTogether = median(together.get(cFutex))!.p50;
console.log("");
printTable([
  ["one-way latency", "p50 us", "p99 us", "max us", "p50 / C futex", "1 core: p50 us", "p99 us", "p50 / C futex"],
  ...rows.map((row) => {
    const [r, t] = [median(apart.get(row))!, median(together.get(row))];
    const oneCore = t ? [us(t.p50), us(t.p99), ratio(t.p50 / floorTogether)] : ["-", "-", "-"];
    return [row.name, us(r.p50), us(r.p99), us(r.max), ratio(r.p50 / floor), ...oneCore];
  }),
]);
console.log("first columns: pinger and ponger pinned to CPUs 0 and 1; \"1 core\": both pinned to CPU 0 (busy-polling rows skipped)");
const idleLine = (what: string, i: Idle) =>
  `  ${what}: ${fmt(i.percent, 3)}% of one core over ${fmt(i.wallMs / 1000, 1)} s, ${fmt(i.wakeupsPerSec, 1)} thread wake-ups/s`;
if (idle) {
  console.log("\nidle (process.cpuUsage and voluntary context switches, all threads):");
  console.log(idleLine("psyne receiver parked in await recv()", idle.psyne));
  console.log(idleLine("baseline: Bun process in await Bun.sleep()", idle.baseline));
}

const verdict = (ok: boolean) => (ok ? "met" : "NOT met");
const p50 = (row: Row) => median(apart.get(row))?.p50;
const target = (label: string, values: (number | undefined)[], show: (...v: number[]) => string) =>
  console.log(`  ${label}: ${values.every((v) => v !== undefined) ? show(...(values as number[])) : "not measured in this run"}`);
console.log("\ntargets (two cores):");
target("busy-poll p50 < 0.4 us", [p50(psynePoll)], (poll) => `${us(poll, 3)} us, ${verdict(poll < 400)}`);
target("parked (await recv) p50 within 1.5x of C futex", [p50(psyneRecv)], (parked) => `${fmt(parked / floor, 2)}x, ${verdict(parked <= 1.5 * floor)}`);
for (const [label, psyneRow, ipcRow] of [
  ["back to back", psyneRecv, bunIpc],
  [`${GAP_MS} ms apart`, spacedRecv, spacedIpc],
] as const)
  target(`parked (await recv) p50 at most Bun IPC's, ${label}`, [p50(psyneRow), p50(ipcRow)], (a, b) => `${us(a)} vs ${us(b)} us (${ratio(a / b)}), ${verdict(a <= b)}`);
for (const [label, bellRow, threadRow] of [
  ["back to back", psyneRecv, psyneRecvThread],
  [`${GAP_MS} ms apart`, spacedRecv, spacedRecvThread],
] as const)
  target(`doorbell vs waiter thread, ${label}, p50`, [p50(bellRow), p50(threadRow)], (a, b) => `${us(a)} vs ${us(b)} us (${ratio(a / b)})`);
target("await recv() as shipped (spin, then park) p50 below Bun IPC's", [p50(psyneRecvDefault), p50(bunIpc)], (a, b) => `${us(a)} vs ${us(b)} us, ${verdict(a < b)}`);
if (idle) console.log(`  idle CPU < 1%: ${fmt(idle.psyne.percent, 3)}%, ${verdict(idle.psyne.percent < 1)}`);
console.log(finalLine);
