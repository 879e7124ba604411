// memory:// channels: private to one process, shared with its Worker threads.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import { createChannel, Int32Vector } from "../src/index.ts";
import { fixture, segments, uniqueName } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default

afterAll(() => expect(segments(`mem-${process.pid}-`)).toEqual([]));

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
