// Makes multi-process tests boring: unique channel names, children spawned with a timeout and
// reaped after each test, and a check that no segment is left in /dev/shm.
import type { Subprocess } from "bun";
import { readdirSync } from "node:fs";
import { join } from "node:path";

export const fixture = (name: string): string => join(import.meta.dir, "..", "fixtures", name);
export const example = (name: string): string => join(import.meta.dir, "..", "..", "examples", name);

let counter = 0;
/** A channel name no other test (or test run) uses: pid, a counter, and random bits. */
export function uniqueName(tag: string): string {
  return `t${process.pid}-${tag}-${counter++}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Segments in /dev/shm whose channel name starts with `prefix` (all psyne ones by default). */
export function segments(prefix = ""): string[] {
  return readdirSync("/dev/shm").filter((f) => f.startsWith(`psyne.${prefix}`));
}

/** Segments this test process created (its names all start with t<pid>-). */
export const ownSegments = (): string[] => segments(`t${process.pid}-`);

const live = new Set<Subprocess>();

export interface SpawnOptions {
  timeoutMs?: number;
  env?: Record<string, string>;
  stdin?: "pipe" | "ignore";
}

/** Runs `bun <script> ...args`; killed with SIGKILL after timeoutMs, and by reapChildren(). */
export function spawnBun(script: string, args: (string | number)[] = [], options: SpawnOptions = {}) {
  const child = Bun.spawn([process.execPath, script, ...args.map(String)], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: options.stdin ?? "ignore",
    timeout: options.timeoutMs ?? 30_000,
    killSignal: "SIGKILL",
    env: { ...process.env, ...options.env },
  });
  live.add(child);
  child.exited.then(() => live.delete(child));
  return child;
}

export interface Finished {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Waits for a child and collects its output. */
export async function finish(child: Subprocess<"ignore" | "pipe", "pipe", "pipe">): Promise<Finished> {
  const [code, stdout, stderr] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  return { code, signal: child.signalCode ?? null, stdout, stderr };
}

/** The last line of a child's stdout parsed as JSON (fixtures report that way). */
export function report<T = Record<string, unknown>>(result: Finished): T {
  const lines = result.stdout.trim().split("\n");
  try {
    return JSON.parse(lines[lines.length - 1]) as T;
  } catch {
    throw new Error(`child exited ${result.code} (${result.signal}) without a JSON report\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
}

/** Resolves when the child prints a line containing `text` (bounded by the child's timeout). */
export async function waitForLine(child: Subprocess<"ignore" | "pipe", "pipe", "pipe">, text: string): Promise<void> {
  const reader = child.stdout.getReader();
  const decoder = new TextDecoder();
  let seen = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`child ended before printing "${text}"; it printed: ${seen}`);
      seen += decoder.decode(value);
      if (seen.includes(text)) return;
    }
  } finally {
    reader.releaseLock();
  }
}

/** Kills and awaits every child still running: call in afterEach. */
export async function reapChildren(): Promise<void> {
  const children = [...live];
  for (const child of children) child.kill("SIGKILL");
  await Promise.all(children.map((c) => c.exited));
}
