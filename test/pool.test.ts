// ProcessPool: every task's result, growth under a burst and shrinking when idle (seen through
// stats), failures as RemoteError, a worker SIGKILLed mid-task whose task still completes, poison
// tasks that end in WORKER_DIED after maxAttempts runs, and a script that cannot be loaded.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProcessPool, PsyneError, RemoteError } from "../src/index.ts";
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
async function withPool(options: ConstructorParameters<typeof ProcessPool>[1], body: (pool: ProcessPool) => Promise<void>, script = task) {
  const pool = new ProcessPool(script, options);
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

/** `promise`, or a failure after `ms`: a submit that never settles fails the test instead of hanging it. */
function within<T>(promise: Promise<T>, what: string, ms = 30_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
const failure = (promise: Promise<unknown>, what: string) => within(promise, what).then(
  (value) => {
    throw new Error(`${what} resolved with ${JSON.stringify(value)}`);
  },
  (error: PsyneError) => error,
);
const runs = (log: string) => (existsSync(log) ? readFileSync(log, "utf8").trim().split("\n").length : 0);

test("a result too large for the result channel rejects that submit with a RemoteError saying so; the worker goes on", () =>
  withPool({ min: 1, max: 1 }, async (pool) => {
    const error = (await failure(pool.submit({ n: 1, bytes: 5_000_000 }), "a 5 MB result")) as RemoteError;
    expect(error).toBeInstanceOf(RemoteError);
    expect(error.remoteName).toBe("MessageTooLargeError");
    expect(error.message).toMatch(/^result of 5000000 bytes does not fit the pool's result channel of 4194304 bytes/);
    expect(((await within(pool.submit({ n: 4 }), "a later task")) as Result).square).toBe(16);
    expect(pool.stats()).toMatchObject({ failed: 1, completed: 1, crashed: 0 });
  }));

test("a task that throws a value that is not an Error, or an Error whose message is a BigInt, rejects with a RemoteError; the worker goes on", () =>
  withPool({ min: 1, max: 1 }, async (pool) => {
    const odd = await failure(pool.submit({ n: 1, throwNullProto: true }), "a thrown Object.create(null)");
    expect(odd).toBeInstanceOf(RemoteError);
    expect(odd.message).toMatch(/not an Error was thrown: an object with no prototype/);
    expect(await failure(pool.submit({ n: 2, throwBigint: true }), "a BigInt message")).toMatchObject({ code: "REMOTE_ERROR", message: "10" });
    expect(((await within(pool.submit({ n: 4 }), "a later task")) as Result).square).toBe(16);
    expect(pool.stats()).toMatchObject({ failed: 2, completed: 1, crashed: 0 });
  }));

test("a poison task that kills its worker runs maxAttempts times in all, then rejects with WORKER_DIED naming the attempts and the signal; other tasks complete", () =>
  withPool({ min: 2, max: 2 }, async (pool) => {
    const log = join(dir, "sigkill.log");
    const poison = failure(pool.submit({ n: 1, kill: "SIGKILL", runLog: log }), "a task that SIGKILLs its worker");
    const others = Array.from({ length: 20 }, (_, n) => within(pool.submit({ n, ms: 5 }), `task ${n}`));
    const error = await poison;
    expect(error).toBeInstanceOf(PsyneError);
    expect(error.code).toBe("WORKER_DIED");
    expect(error.message).toMatch(/died on all 3 attempts \(attempt 1: killed by SIGKILL; attempt 2: killed by SIGKILL; attempt 3: killed by SIGKILL\)/);
    expect(runs(log)).toBe(3);
    expect(((await Promise.all(others)) as Result[]).map((r) => r.square)).toEqual(Array.from({ length: 20 }, (_, n) => n * n));
    expect(((await within(pool.submit({ n: 5 }), "a later task")) as Result).square).toBe(25);
    expect(pool.stats()).toMatchObject({ crashed: 3, workers: 2 });
  }));

test("a task whose worker exits (code 1, or even 0) counts as a worker death: maxAttempts runs, then WORKER_DIED with the exit code", () =>
  withPool({ min: 1, max: 1, maxAttempts: 2 }, async (pool) => {
    for (const code of [1, 0]) {
      const log = join(dir, `exit-${code}.log`);
      const error = await failure(pool.submit({ n: code, exit: code, runLog: log }), `a task that calls process.exit(${code})`);
      expect(error).toMatchObject({ code: "WORKER_DIED" });
      expect(error.message).toMatch(new RegExp(`died on all 2 attempts \\(attempt 1: exited with code ${code}; attempt 2: exited with code ${code}\\)`));
      expect(runs(log)).toBe(2);
    }
    expect(((await within(pool.submit({ n: 6 }), "a later task")) as Result).square).toBe(36);
  }));

test("workers SIGKILLed at random instants lose no task", () =>
  withPool({ min: 2, max: 2, maxAttempts: 100 }, async (pool) => {
    const all = Array.from({ length: 400 }, (_, n) => within(pool.submit({ n, ms: n % 5 }), `task ${n}`, 60_000));
    let kills = 0;
    const killer = setInterval(() => {
      const pids = Bun.spawnSync(["pgrep", "-f", `pool-${process.pid}-`]).stdout.toString().trim().split("\n").filter(Boolean);
      const victim = pids[Math.floor(Math.random() * pids.length)];
      if (victim && kills < 15) {
        kills++;
        process.kill(Number(victim), "SIGKILL");
      }
    }, 40);
    try {
      expect(((await Promise.all(all)) as Result[]).map((r) => r.square)).toEqual(Array.from({ length: 400 }, (_, n) => n * n));
    } finally {
      clearInterval(killer);
    }
    console.log(`${kills} workers killed; stats ${JSON.stringify(pool.stats())}`);
    expect(kills).toBeGreaterThan(0);
  }));

for (const [what, script, why] of [
  ["throws at import", fixture("pool_bad_import.ts"), /this script is broken at import/],
  ["does not exist", join(dir, "no-such-script.ts"), /Cannot find module/],
] as const) {
  test(`a pool whose script ${what} rejects submit with a PsyneError naming the script and its error, and starts no more workers`, () =>
    withPool(
      { min: 1, max: 2 },
      async (pool) => {
        const error = await failure(pool.submit({ n: 1 }), "a task");
        expect(error).toBeInstanceOf(PsyneError);
        expect(error.code).toBe("SCRIPT_LOAD_FAILED");
        expect(error.message).toContain(script);
        expect(error.message).toMatch(why);
        expect(await failure(pool.submit({ n: 2 }), "a later task")).toBe(error);
        const { started } = pool.stats();
        await Bun.sleep(500);
        expect(pool.stats()).toMatchObject({ started, workers: 0 });
        expect(started).toBeLessThanOrEqual(2);
      },
      script,
    ));
}

test("submit() rejects, never throws, for a task it cannot send; a DataView arrives as a DataView", () =>
  withPool({ min: 1, max: 1 }, async (pool) => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const [value, problem] of [[10n, /BigInt/], [cyclic, /cyclic/]] as const) {
      let result: Promise<unknown> | string;
      try {
        result = pool.submit(value);
      } catch (thrown) {
        result = `threw synchronously: ${thrown}`;
      }
      expect(result).toBeInstanceOf(Promise);
      const error = await failure(result as Promise<unknown>, "an unsendable task");
      expect(error).toMatchObject({ code: "INVALID_ARGUMENT" });
      expect(error.message).toMatch(problem);
    }
    const view = (await within(pool.submit(new DataView(new Uint8Array([1, 2, 3, 4]).buffer, 1, 2)), "a DataView")) as DataView;
    expect(view).toBeInstanceOf(DataView);
    expect([...new Uint8Array(view.buffer, view.byteOffset, view.byteLength)]).toEqual([2, 3]);
  }));
