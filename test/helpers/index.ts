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

type Child = Subprocess<"ignore" | "pipe", "pipe", "pipe">;
const live = new Set<Subprocess>();

/** Everything a child printed so far, collected from the moment it starts (a full pipe would block it). */
interface Output {
  stdout: string;
  stderr: string;
  done: Promise<void>;
  changed: () => Promise<void>;
}
const outputs = new WeakMap<Subprocess, Output>();
const outputEnded = new WeakSet<Subprocess>(); // both of its pipes closed: it prints nothing more

function collect(child: Child): Output {
  let wake: () => void = () => {};
  let next = new Promise<void>((r) => (wake = r));
  const output: Output = { stdout: "", stderr: "", done: Promise.resolve(), changed: () => next };
  const pump = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      output[key] += decoder.decode(chunk, { stream: true });
      wake();
      next = new Promise<void>((r) => (wake = r));
    }
  };
  output.done = Promise.all([pump(child.stdout, "stdout"), pump(child.stderr, "stderr")]).then(() => {
    outputEnded.add(child);
    wake();
  });
  return output;
}

export interface SpawnOptions {
  /** A command that runs bun, such as a sandbox (e.g. test/native/no-membarrier). */
  wrapper?: string[];
  timeoutMs?: number;
  env?: Record<string, string>;
  stdin?: "pipe" | "ignore";
}

/** Runs `bun <script> ...args`; killed with SIGKILL after timeoutMs, and by reapChildren(). */
export function spawnBun(script: string, args: (string | number)[] = [], options: SpawnOptions = {}) {
  const child = Bun.spawn([...(options.wrapper ?? []), process.execPath, script, ...args.map(String)], {
    stdout: "pipe",
    stderr: "pipe",
    stdin: options.stdin ?? "ignore",
    timeout: options.timeoutMs ?? 30_000,
    killSignal: "SIGKILL",
    env: { ...process.env, ...options.env },
  });
  live.add(child);
  outputs.set(child, collect(child as Child));
  child.exited.then(() => live.delete(child));
  return child;
}

export interface Finished {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Waits for a child and returns all it printed. */
export async function finish(child: Subprocess): Promise<Finished> {
  const output = outputs.get(child)!;
  const [code] = await Promise.all([child.exited, output.done]);
  return { code, signal: child.signalCode === null ? null : String(child.signalCode), stdout: output.stdout, stderr: output.stderr };
}

/** The last line of a child's stdout parsed as JSON (fixtures report that way). */
export function report<T = Record<string, unknown>>(result: Finished): T {
  const lines = result.stdout.trim().split("\n");
  try {
    return JSON.parse(lines[lines.length - 1]!) as T;
  } catch {
    throw new Error(`child exited ${result.code} (${result.signal}) without a JSON report\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  }
}

/** Resolves when the child has printed `text` (bounded by the child's timeout). */
export const waitForLine = (child: Subprocess, text: string) => waitForOutput(child, text, "stdout");
export const waitForStderr = (child: Subprocess, text: string) => waitForOutput(child, text, "stderr");

async function waitForOutput(child: Subprocess, text: string, stream: "stdout" | "stderr"): Promise<void> {
  const output = outputs.get(child)!;
  let ended = false;
  output.done.then(() => (ended = true));
  while (!output[stream].includes(text)) {
    if (ended) throw new Error(`child ended before printing "${text}"; it printed: ${output.stdout}${output.stderr}`);
    await Promise.race([output.changed(), output.done]);
  }
}

/** The `index`-th line a child printed on stdout, once it has printed it (bounded by the child's timeout). */
export async function stdoutLine(child: Subprocess, index: number): Promise<string> {
  const output = outputs.get(child)!;
  let ended = false;
  output.done.then(() => (ended = true));
  for (;;) {
    const lines = output.stdout.split("\n");
    if (lines.length > index + 1) return lines[index]!;
    if (ended) throw new Error(`child ended after ${lines.length - 1} lines; it printed: ${output.stdout}${output.stderr}`);
    await Promise.race([output.changed(), output.done]);
  }
}

/** Everything a child printed on stderr so far. */
export const stderrOf = (child: Subprocess): string => outputs.get(child)!.stderr;
/** Everything a child printed on stdout so far. */
export const stdoutOf = (child: Subprocess): string => outputs.get(child)!.stdout;

/** Waits until `test()` holds, re-checking whenever one of `children` prints something (bounded by their timeouts). */
export async function untilOutput(children: Subprocess[], test: () => boolean, what = "the condition"): Promise<void> {
  while (!test()) {
    const live = children.filter((c) => !outputEnded.has(c));
    if (live.length === 0) throw new Error(`every child ended before ${what}; they printed: ${children.map((c) => outputs.get(c)!.stdout + outputs.get(c)!.stderr).join("\n---\n")}`);
    await Promise.race(live.map((c) => Promise.race([outputs.get(c)!.changed(), outputs.get(c)!.done])));
  }
}

/** Kills and awaits every child still running: call in afterEach. */
export async function reapChildren(): Promise<void> {
  const children = [...live];
  for (const child of children) child.kill("SIGKILL");
  await Promise.all(children.map((c) => c.exited));
}

let testLibraryPath: string | undefined;
/**
 * The test library: the C core with its kill and stall points compiled in (never shipped), built
 * on first use by scripts/build-native.mjs --test-hooks. Children load it with PSYNE_LIB.
 */
export function testLibrary(): string {
  if (testLibraryPath) return testLibraryPath;
  const root = join(import.meta.dir, "..", "..");
  const built = Bun.spawnSync([process.execPath, join(root, "scripts", "build-native.mjs"), "--test-hooks"], { cwd: root, stderr: "pipe" });
  if (built.exitCode !== 0) throw new Error(`building the test library failed: ${built.stderr.toString()}`);
  testLibraryPath = join(root, "build", "test-hooks", "lib", process.platform === "darwin" ? "libpsyne.dylib" : "libpsyne.so");
  return testLibraryPath;
}
