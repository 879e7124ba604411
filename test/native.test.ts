// The C core under thread stress (test/native/stress.c): threads in one process, one handle each,
// every mode, every message checked; BROADCAST subscribers that join and leave while the producer
// floods. Built with the Zig toolchain from the dev dependencies, with the test hooks so that
// positions start just below 2^64 and every run crosses the wrap. The same harness runs under
// ThreadSanitizer with scripts/tsan-stress.sh.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { segments } from "./helpers";

setDefaultTimeout(120_000);
const root = join(import.meta.dir, "..");
const dir = mkdtempSync(join(tmpdir(), "psyne-native-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterAll(() => expect(segments("stress-")).toEqual([]));

const zig = join(root, "node_modules", "@ryoppippi", "zig-linux-x64", "zig");
const sources = ["segment", "participants", "events", "ring", "recovery", "wait", "hooks"].map((f) => join(root, "csrc", `${f}.c`));
const stress = join(dir, "stress");
function build(): void {
  const built = Bun.spawnSync([zig, "cc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-DPSY_TEST_HOOKS", "-o", stress, join(root, "test", "native", "stress.c"), ...sources, "-lpthread"], { stderr: "pipe" });
  if (built.exitCode !== 0) throw new Error(`building the stress harness failed: ${built.stderr}`);
}

function run(args: (string | number)[]): string {
  const result = Bun.spawnSync([stress, ...args.map(String)], { env: { ...process.env, PSY_TEST_START_POS: "-8" }, stdout: "pipe", stderr: "pipe", timeout: 60_000 });
  const output = `${result.stdout}${result.stderr}`;
  if (result.exitCode !== 0) throw new Error(`stress ${args.join(" ")} failed (exit ${result.exitCode}):\n${output}`);
  return output.trim();
}

describe("threads hammering one channel, one handle each", () => {
  test("the harness builds", build);
  const shapes: Array<[string, number, number]> = [["SPSC", 1, 1], ["MPSC", 3, 1], ["SPMC", 1, 3], ["MPMC", 2, 2], ["BROADCAST", 1, 3]];
  for (const [mode, producers, consumers] of shapes)
    for (const [flags, what] of [["", "polling"], ["w", "waiting in the kernel"], ["b", "in batches"], ["wb", "in batches, waiting"]] as const)
      test(`${mode} ${producers}:${consumers}, ${what}: every message intact, once, in each producer's order where promised, across the 2^64 wrap`, () => {
        console.log(run([mode, producers, consumers, 50_000, 4096, 512, flags]));
      });
  test("BROADCAST: subscribers joining and leaving while the producer floods with ring-sized messages are never lapped", () => {
    console.log(run(["BROADCAST", 1, 0, 1_500_000, 4096, 4000, "j"]));
  });
});
