// The published package as a user gets it: `npm pack` (which builds every platform's library and
// the type declarations), then `bun add` of the tarball into a fresh `bun init` project. Bun runs
// no install script of a dependency ("Blocked 1 postinstall"), so whatever works here works with
// psyne's postinstall blocked.
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { finish, ownSegments, reapChildren, spawnBun, uniqueName } from "./helpers";

const root = join(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "psyne-package-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

setDefaultTimeout(120_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const project = join(dir, "app");
/** The user's shell has bun on PATH and nothing else of ours: no zig. */
const bin = join(dir, "bin");
const devZig = join(root, "node_modules", "@ryoppippi", "zig-linux-x64", "zig");

/** Runs a command to its end (SIGKILL after timeoutMs); everything it printed. */
const { PSYNE_LIB: _, ...withoutLibOverride } = process.env;

async function run(cmd: string[], options: { cwd: string; path?: string; env?: Record<string, string>; timeoutMs?: number }) {
  const child = Bun.spawn(cmd, {
    cwd: options.cwd,
    // the installed package must use its own library, not one a test run points PSYNE_LIB at
    env: { ...withoutLibOverride, PATH: options.path ?? `${bin}:${process.env.PATH}`, ...options.env },
    stdout: "pipe",
    stderr: "pipe",
    timeout: options.timeoutMs ?? 120_000,
    killSignal: "SIGKILL",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { code, stdout, stderr, output: `${stdout}${stderr}` };
}

// A producer and a consumer as a user writes them from the README, importing "psyne".
const READING = `const Reading = defineMessage("Reading", { sensor: "u32", value: "f64", at: "u64", history: ["f32", 4] });`;
const producer = `import { ChannelMode, createChannel, defineMessage, FloatVector } from "psyne";

${READING}
const uri = process.argv[2] ?? "ipc://sensor_data";
const channel = createChannel(uri, { bufferSize: 1 << 20, mode: ChannelMode.SPSC, role: "producer" });
for (let i = 0; i < 100; i++) {
  const v = await FloatVector.allocAsync(channel, 100, { timeout: 30_000 });
  for (let j = 0; j < v.length; j++) v[j] = i * 1000 + j;
  channel.send(v);
}
const r = new Reading(channel);
r.sensor = 7;
r.value = 21.5;
r.at = 1234n;
r.history.set([1, 2, 3, 4]);
channel.send(r);
channel.sendJson({ done: true, sent: 100 });
channel.close();
`;
const consumer = `import { ChannelMode, createChannel, defineMessage, FloatVector, type Message, PsyneError } from "psyne";

${READING}
const uri = process.argv[2] ?? "ipc://sensor_data";
const channel = createChannel(uri, 1 << 20, ChannelMode.SPSC);
let vectors = 0;
let bad = 0;
for (; vectors < 100; vectors++) {
  const v = await channel.recv(FloatVector, { timeout: 30_000 });
  if (!v) throw new PsyneError("TIMEOUT", \`no vector after \${vectors}\`);
  for (let j = 0; j < v.length; j++) if (v[j] !== vectors * 1000 + j) bad++;
}
const r = await channel.recv(Reading, { timeout: 30_000 });
const reading = r && { sensor: r.sensor, value: r.value, at: String(r.at), history: Array.from(r.history) };
const end: Message | null = await channel.recv(undefined, { timeout: 30_000 });
const last = end?.json<{ done: boolean; sent: number }>();
console.log(JSON.stringify({ vectors, bad, reading, last, received: channel.stats().messagesReceived }));
channel.close();
`;

// Checked, never run: psyne's declarations are real types, not \`any\` (else the directive is unused).
const misuse = `import { createChannel } from "psyne";

// @ts-expect-error: bufferSize is a number of bytes
export const wrong = () => createChannel("ipc://x", { bufferSize: "4 MiB" });
`;

beforeAll(async () => {
  mkdirSync(bin);
  symlinkSync(process.execPath, join(bin, "bun"));
  const packed = await run(["npm", "pack", "--pack-destination", dir], { cwd: root, timeoutMs: 600_000 });
  if (packed.code !== 0) throw new Error(`npm pack failed:\n${packed.output}`);
  const tarball = join(dir, readdirSync(dir).find((f) => f.endsWith(".tgz"))!);
  mkdirSync(project);
  const init = await run(["bun", "init", "-y"], { cwd: project });
  if (init.code !== 0) throw new Error(`bun init failed:\n${init.output}`);
  const added = await run(["bun", "add", tarball], { cwd: project });
  if (added.code !== 0) throw new Error(`bun add failed:\n${added.output}`);
  writeFileSync(join(project, "producer.ts"), producer);
  writeFileSync(join(project, "consumer.ts"), consumer);
  writeFileSync(join(project, "misuse.ts"), misuse);
}, 900_000);

test("the installed package works without its install script: a producer and a consumer exchange messages", async () => {
  const uri = `ipc://${uniqueName("pkg")}`;
  const c = spawnBun(join(project, "consumer.ts"), [uri], { timeoutMs: 60_000 });
  const p = spawnBun(join(project, "producer.ts"), [uri], { timeoutMs: 60_000 });
  const [consumed, produced] = await Promise.all([finish(c), finish(p)]);
  expect(produced).toMatchObject({ code: 0, stderr: "" });
  expect(consumed).toMatchObject({ code: 0, stderr: "" });
  expect(JSON.parse(consumed.stdout)).toEqual({
    vectors: 100,
    bad: 0,
    reading: { sensor: 7, value: 21.5, at: "1234", history: [1, 2, 3, 4] },
    last: { done: true, sent: 100 },
    received: 101,
  });
});

describe("type-checking the user's project (bun init's tsconfig: strict, noUncheckedIndexedAccess, skipLibCheck, ...)", () => {
  test("the project's own tsc --noEmit reports no error", async () => {
    const tsc = join(project, "node_modules", ".bin", "tsc");
    expect(existsSync(tsc)).toBe(true); // bun init installs one
    const result = await run([tsc, "--noEmit"], { cwd: project });
    expect({ code: result.code, output: result.output }).toEqual({ code: 0, output: "" });
  });

  test("psyne's own TypeScript (tsc --noEmit -p) and bun check report no error either", async () => {
    const tsc = await run(["bun", join(root, "node_modules", "typescript", "bin", "tsc"), "--noEmit", "-p", project], { cwd: project });
    expect({ code: tsc.code, output: tsc.output }).toEqual({ code: 0, output: "" });
    const check = await run(["bun", "check", "--no-script"], { cwd: project });
    expect({ code: check.code, output: check.output }).toMatchObject({ code: 0 });
  });
});

describe("bunx psyne bench from the installed package", () => {
  const quick = { BENCH_ONLY: "psyne,c-ring,unix", BENCH_SIZES: "64", BENCH_SCALE: "0.01" };
  const cRingRow = /^\| C SPSC ring \(shared memory\) +\| +64 B \|(.*)$/m;

  test("without a zig the C ring shows as not run and the others run", async () => {
    const result = await run(["bun", "x", "psyne", "bench"], { cwd: project, path: bin, env: quick });
    expect(result.stderr).not.toContain("benchmark failed");
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^\| psyne, send\(\) per message +\| +64 B \| +[\d,]+ \|/m);
    expect(result.stdout).toMatch(/^\| Unix socket \(64 KiB writes\) +\| +64 B \| +[\d,]+ \|/m);
    expect(cRingRow.exec(result.stdout)?.[1]).toContain("not run: needs zig");
  });

  test.skipIf(!existsSync(devZig))("with a zig on PATH the C ring runs too", async () => {
    const withZig = join(dir, "bin-zig");
    mkdirSync(withZig);
    symlinkSync(process.execPath, join(withZig, "bun"));
    symlinkSync(devZig, join(withZig, "zig"));
    const result = await run(["bun", "x", "psyne", "bench"], { cwd: project, path: withZig, env: quick });
    expect(result.stderr).not.toContain("benchmark failed");
    expect(result.code).toBe(0);
    expect(cRingRow.exec(result.stdout)?.[1]).toMatch(/^ +[\d,]+ \|/);
  });
});
