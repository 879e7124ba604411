// ProcessPool: every task's result, growth under a burst and shrinking when idle (seen through
// stats), failures as RemoteError, and a worker SIGKILLed mid-task whose task still completes.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProcessPool, RemoteError } from "../src/index.ts";
import { fixture, segments } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default
const dir = mkdtempSync(join(tmpdir(), "psyne-pool-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  expect(segments(`pool-${process.pid}-`)).toEqual([]);
});

const task = fixture("pool_task.ts");
type Result = { n: number; square: number; pid: number };

/** Runs `body` with a pool that is closed however the test ends (no orphaned workers). */
async function withPool(options: ConstructorParameters<typeof ProcessPool>[1], body: (pool: ProcessPool) => Promise<void>) {
  const pool = new ProcessPool(task, options);
  try {
    await body(pool);
  } finally {
    await pool.close();
  }
}

test("every task's result comes back", () =>
  withPool({ min: 2, max: 2 }, async (pool) => {
    const results = (await Promise.all(Array.from({ length: 500 }, (_, n) => pool.submit({ n })))) as Result[];
    expect(results.map((r) => r.square)).toEqual(Array.from({ length: 500 }, (_, n) => n * n));
  }));

test("tasks that take a while spread over the workers", () =>
  withPool({ min: 2, max: 2 }, async (pool) => {
    const results = (await Promise.all(Array.from({ length: 30 }, (_, n) => pool.submit({ n, ms: 20 })))) as Result[];
    expect(new Set(results.map((r) => r.pid)).size).toBe(2); // 600 ms of work: both workers are up long before
  }));

test("grows under a burst up to max, and shrinks back to min when idle", () =>
  withPool({ min: 1, max: 4, idleMs: 200 }, async (pool) => {
  expect(pool.stats().workers).toBe(1);
  const burst = Array.from({ length: 60 }, (_, n) => pool.submit({ n, ms: 20 }));
  let peak = 0;
  const watch = setInterval(() => (peak = Math.max(peak, pool.stats().workers)), 5);
  await Promise.all(burst);
  clearInterval(watch);
  expect(peak).toBe(4);
  const deadline = Date.now() + 10_000;
  while (pool.stats().workers > 1 && Date.now() < deadline) await Bun.sleep(20);
  expect(pool.stats()).toMatchObject({ workers: 1, pending: 0, completed: 60, crashed: 0 });
  }));

test("a task that throws rejects with RemoteError; the worker goes on", () =>
  withPool({ min: 1, max: 1 }, async (pool) => {
  const error = (await pool.submit({ n: 3, fail: true }).catch((e) => e)) as RemoteError;
  expect(error).toBeInstanceOf(RemoteError);
  expect(error.message).toBe("task 3 failed");
  expect(((await pool.submit({ n: 4 })) as Result).square).toBe(16);
  expect(pool.stats()).toMatchObject({ failed: 1, completed: 1, crashed: 0 });
  }));

test("a worker SIGKILLed mid-task is replaced, and the task still completes", () =>
  withPool({ min: 1, max: 1 }, async (pool) => {
  const pidFile = join(dir, "running.pid");
  const slow = pool.submit({ n: 9, ms: 1_000, pidFile });
  const deadline = Date.now() + 10_000;
  while (!existsSync(pidFile) && Date.now() < deadline) await Bun.sleep(5);
  const victim = Number(readFileSync(pidFile, "utf8"));
  process.kill(victim, "SIGKILL");
  const result = (await slow) as Result;
  expect(result.square).toBe(81);
  expect(result.pid).not.toBe(victim);
  expect(pool.stats()).toMatchObject({ crashed: 1, workers: 1 });
  }));

test("workers exit by themselves when the process that owns the pool dies", async () => {
  const owner = Bun.spawn([process.execPath, "-e", `
    import { ProcessPool } from "${join(import.meta.dir, "..", "src", "index.ts")}";
    const pool = new ProcessPool("${task}", { min: 2, max: 2 });
    await pool.submit({ n: 1 }); await pool.submit({ n: 2 });
    console.log(JSON.stringify(pool.stats()));
    setInterval(() => {}, 1000);`], { stdout: "pipe", timeout: 20_000 });
  const reader = owner.stdout.getReader();
  await reader.read(); // the pool is up and has run tasks
  const workers = () => Bun.spawnSync(["pgrep", "-f", "pool-worker.ts.*pool_task.ts"]).stdout.toString().trim().split("\n").filter(Boolean);
  expect(workers().length).toBeGreaterThanOrEqual(1);
  owner.kill("SIGKILL");
  await owner.exited;
  const deadline = Date.now() + 5_000;
  while (workers().length > 0 && Date.now() < deadline) await Bun.sleep(50);
  expect(workers()).toEqual([]);
  for (const leftover of segments(`pool-${owner.pid}-`)) rmSync(`/dev/shm/${leftover}`); // its owner crashed
});
