// Shipping: the package holds what a user needs; a `bun build --compile` executable carries the
// native library and runs from anywhere; a platform without a library gets a clear error.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { example, finish, ownSegments, reapChildren, spawnBun, uniqueName } from "./helpers";

setDefaultTimeout(120_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const root = join(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "psyne-ship-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// the executables must use the library embedded in them, not one a test run points PSYNE_LIB at
const { PSYNE_LIB: _, ...embeddedEnv } = process.env;

describe("bun build --compile", () => {
  const exe = join(dir, "build", "consumer");
  const elsewhere = join(dir, "elsewhere");

  test("an executable built from the seed's consumer runs from another directory against a Bun producer", async () => {
    const built = Bun.spawnSync([process.execPath, "build", "--compile", "--outfile", exe, example("ipc_consumer.ts")], { cwd: root });
    expect(built.exitCode).toBe(0);
    mkdirSync(elsewhere, { recursive: true });
    const moved = join(elsewhere, "consumer");
    copyFileSync(exe, moved); // nothing of psyne beside it
    Bun.spawnSync(["chmod", "+x", moved]);
    const uri = `ipc://${uniqueName("compiled")}`;
    const consumer = Bun.spawn([moved, uri], { cwd: elsewhere, env: embeddedEnv, stdout: "pipe", stderr: "pipe", timeout: 60_000 });
    const producer = spawnBun(example("ipc_producer.ts"), [uri, "--interval-ms", "0"]);
    const [out] = await Promise.all([new Response(consumer.stdout).text(), finish(producer)]);
    expect(await consumer.exited).toBe(0);
    expect(out).toContain("received 1000/1000 in order, every value checked");
  });

  test("with no writable temporary directory it fails with a message that says what to do", async () => {
    const moved = join(elsewhere, "consumer");
    const child = Bun.spawn([moved, `ipc://${uniqueName("no-tmp")}`], {
      cwd: elsewhere,
      env: { ...embeddedEnv, TMPDIR: "/nonexistent/psyne", BUN_TMPDIR: "/nonexistent/psyne" },
      stdout: "pipe",
      stderr: "pipe",
      timeout: 30_000,
    });
    const stderr = await new Response(child.stderr).text();
    expect(await child.exited).toBe(1); // an error, not a crash
    expect(stderr).toContain("set TMPDIR or BUN_TMPDIR to a writable directory");
  });
});

test("a missing native library is a PsyneError naming the platform and the path", async () => {
  const child = spawnBun(example("ipc_consumer.ts"), ["ipc://never"], { env: { PSYNE_LIB: "/nonexistent/libpsyne.so" } });
  const result = await finish(child);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain(`psyne has no native library for ${process.platform}-${process.arch} at /nonexistent/libpsyne.so`);
});

test("npm pack holds the library sources, the built libraries and the C header, and no tests", () => {
  const packed = Bun.spawnSync(["npm", "pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: root });
  expect(packed.exitCode).toBe(0);
  const files = (JSON.parse(packed.stdout.toString())[0].files as { path: string }[]).map((f) => f.path);
  for (const needed of [
    "package.json",
    "README.md",
    "src/index.ts",
    "src/cli.ts",
    "src/native-libs.ts",
    "csrc/psyne.h",
    "csrc/layout.h",
    "build.zig",
    "scripts/build-native.mjs",
    `prebuilds/${process.platform}-${process.arch}/lib/libpsyne.so`,
  ])
    expect(files).toContain(needed);
  expect(files.filter((f) => /^(test|examples|node_modules|zig-cache|\.ci)\//.test(f))).toEqual([]);
});
