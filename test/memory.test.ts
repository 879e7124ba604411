// memory:// channels: private to one process, shared with its Worker threads.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { createChannel, Int32Vector } from "../src/index.ts";
import { finish, fixture, report, segments, spawnBun, uniqueName, waitForLine } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default

afterAll(() => expect(segments(`mem-`)).toEqual([]));

test("a memory:// channel carries messages from this thread to a Worker", async () => {
  const uri = `memory://${uniqueName("mem")}`;
  const channel = createChannel(uri, 65536);
  const worker = new Worker(fixture("memory_worker.ts"));
  try {
    const done = new Promise<{ received: number; sum: number }>((resolve) => (worker.onmessage = (e) => resolve(e.data)));
    worker.postMessage(uri);
    for (let i = 1; i <= 100; i++) {
      let v = channel.tryAlloc(Int32Vector, 1);
      const deadline = Date.now() + 10_000;
      while (!v && Date.now() < deadline) v = channel.tryAlloc(Int32Vector, 1);
      v![0] = i;
      channel.send(v!);
    }
    expect(await done).toEqual({ received: 100, sum: 5050 });
  } finally {
    worker.terminate();
    channel.close();
  }
});

test("the same memory:// name in two processes is two channels", async () => {
  const name = uniqueName("mem-private");
  const channel = createChannel(`memory://${name}`, 4096);
  channel.send("mine");
  const child = Bun.spawn(
    [process.execPath, "-e", `import("${import.meta.dir}/../src/index.ts").then(p => { try { p.createChannel("memory://${name}", { open: "attach" }); console.log("found") } catch (e) { console.log(e.code) } })`],
    { stdout: "pipe", timeout: 20_000 },
  );
  expect((await new Response(child.stdout).text()).trim()).toBe("CHANNEL_NOT_FOUND");
  expect(channel.receive()!.text()).toBe("mine");
  channel.close();
});

test("a memory:// channel leaves nothing in /dev/shm, even when its process exits with messages unread", async () => {
  const name = uniqueName("mem-exit");
  const before = segments();
  const child = spawnBun(fixture("memory_pid1.ts"), ["send", name, 0]);
  expect(report(await finish(child))).toMatchObject({ sent: true });
  expect(segments().filter((f) => !before.includes(f) && f.includes(name))).toEqual([]);
  expect(segments().filter((f) => f.startsWith("psyne.mem-"))).toEqual([]);
});

test("two processes that are both pid 1 (pid namespaces sharing /dev/shm, as containers) do not share a memory:// channel", async () => {
  const name = uniqueName("mem-pid1");
  // an unprivileged user namespace lets us make pid namespaces without root
  const asPid1 = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"];
  const sender = spawnBun(fixture("memory_pid1.ts"), ["send", name, 3000], { wrapper: asPid1 });
  await waitForLine(sender, "sent");
  const looker = spawnBun(fixture("memory_pid1.ts"), ["look", name, 0], { wrapper: asPid1 });
  const seen = report<{ pid: number; found: string | null }>(await finish(looker));
  expect(seen.pid).toBe(1);
  expect(seen.found).toBeNull(); // not the other pid 1's message
  sender.kill("SIGKILL");
  await sender.exited;
});

for (const [scenario, expected] of [
  ["parked", ["after"]],
  ["claim", ["after"]],
  ["held", ["after", "first"]],
] as const)
  test(`a Worker terminated while ${scenario === "parked" ? "parked in recv()" : scenario === "claim" ? "holding an allocated message" : "holding a received message"} counts as crashed: the process lives, nothing is wedged or lost`, async () => {
    const child = spawnBun(fixture("worker_terminate.ts"), [scenario, uniqueName("wt")]);
    const result = await finish(child);
    expect(result.signal).toBeNull(); // no crash in the waiter thread
    const outcome = report<{ got: string[]; firstAfterMs: number }>(result);
    expect(outcome.got).toEqual([...expected]); // the held one delivered again
    expect(outcome.firstAfterMs).toBeLessThan(100);
  });
