// SPSC across real processes: the seed's producer and consumer in every start order, and a
// seeded stream of random sizes that wraps a small ring thousands of times.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { example, finish, fixture, ownSegments, reapChildren, report, spawnBun, uniqueName } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default

afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const seedDone = "received 1000/1000 in order, every value checked";

describe("the seed's producer and consumer", () => {
  test("consumer first, then producer: all 1000 vectors arrive with every value right", async () => {
    const uri = `ipc://${uniqueName("seed-cf")}`;
    const consumer = spawnBun(example("ipc_consumer.ts"), [uri]);
    const producer = spawnBun(example("ipc_producer.ts"), [uri, "--interval-ms", "0"]);
    const [c, p] = await Promise.all([finish(consumer), finish(producer)]);
    expect(p.code).toBe(0);
    expect(c.stdout).toContain(seedDone);
    expect(c.code).toBe(0);
  });

  test("producer first and gone before the consumer starts: the channel keeps every message", async () => {
    const uri = `ipc://${uniqueName("seed-pf")}`;
    const p = await finish(spawnBun(example("ipc_producer.ts"), [uri, "--interval-ms", "0"]));
    expect(p.code).toBe(0);
    const c = await finish(spawnBun(example("ipc_consumer.ts"), [uri]));
    expect(c.stdout).toContain(seedDone);
    expect(c.code).toBe(0);
  });

  test("both started at the same instant, with the seed's 10 ms pacing for the first messages", async () => {
    const uri = `ipc://${uniqueName("seed-sim")}`;
    const [c, p] = await Promise.all([
      finish(spawnBun(example("ipc_consumer.ts"), [uri, "--count", "100"])),
      finish(spawnBun(example("ipc_producer.ts"), [uri, "--count", "100", "--interval-ms", "10"])),
    ]);
    expect(p.code).toBe(0);
    expect(c.stdout).toContain("received 100/100 in order, every value checked");
    expect(c.code).toBe(0);
  });
});

describe("wrap-around", () => {
  test("100 000 messages of 1 byte to 40% of a 16 KiB ring arrive in order, every byte checked", async () => {
    const uri = `ipc://${uniqueName("wrap")}`;
    const args = [uri, 100_000, 42, 6553, 16384];
    const [c, p] = await Promise.all([
      finish(spawnBun(fixture("stream_consumer.ts"), args, { timeoutMs: 120_000 })),
      finish(spawnBun(fixture("stream_producer.ts"), args, { timeoutMs: 120_000 })),
    ]);
    expect(p.code).toBe(0);
    const result = report<{ received: number; wrong: number; bytes: number }>(c);
    expect(result.received).toBe(100_000);
    expect(result.wrong).toBe(0);
    // the stream is many times the ring: it wrapped
    expect(result.bytes).toBeGreaterThan(16384 * 100);
    expect(c.code).toBe(0);
  }, 150_000);

  test("messages up to the whole capacity pass through a 4 KiB ring", async () => {
    const uri = `ipc://${uniqueName("wrap-big")}`;
    // 4096 capacity - 16 header = the largest message that fits; one in ten is large
    const args = [uri, 5_000, 7, 4080, 4096];
    const [c, p] = await Promise.all([
      finish(spawnBun(fixture("stream_consumer.ts"), args)),
      finish(spawnBun(fixture("stream_producer.ts"), args)),
    ]);
    expect(p.code).toBe(0);
    const result = report<{ received: number; wrong: number }>(c);
    expect(result).toMatchObject({ received: 5_000, wrong: 0 });
  });
});
