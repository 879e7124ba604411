// MPSC, SPMC, MPMC and BROADCAST across real processes. Every message carries its producer,
// sequence number and a checksum; nothing may be lost, duplicated, torn or (per producer) reordered.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ByteVector, ChannelMode, ChannelRoleError, createChannel } from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, uniqueName, waitForLine } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default

afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

type ConsumerReport = { received: number; broken: number; seqs: Record<string, number[]> };
const range = (n: number, from = 0) => Array.from({ length: n - from }, (_, i) => from + i);

function producer(uri: string, mode: string, bufferSize: number, id: number, count: number, maxBody: number) {
  return spawnBun(fixture("mode_producer.ts"), [uri, mode, bufferSize, id, count, maxBody], { timeoutMs: 120_000 });
}
function consumer(uri: string, mode: string, bufferSize: number, opts: { stopAfter?: number; slowEvery?: number; untilSeq?: number } = {}) {
  const args = [uri, mode, bufferSize, opts.stopAfter ?? 0, opts.slowEvery ?? 0, opts.untilSeq ?? -1];
  return spawnBun(fixture("mode_consumer.ts"), args, { timeoutMs: 120_000, stdin: "pipe" });
}

/** Waits (bounded) until the channel's consumers have released `total` messages. */
async function untilReceived(uri: string, total: number, timeoutMs = 90_000): Promise<void> {
  const observer = createChannel(uri, { open: "attach" });
  try {
    const deadline = Date.now() + timeoutMs;
    while (observer.stats().messagesReceived < total) {
      if (Date.now() > deadline) throw new Error(`only ${observer.stats().messagesReceived}/${total} received after ${timeoutMs} ms`);
      await Bun.sleep(5);
    }
  } finally {
    observer.close();
  }
}

describe("MPSC: log aggregation", () => {
  test("4 producer processes x 20 000 messages through a 64 KiB ring: each exactly once, in each producer's order", async () => {
    const uri = `ipc://${uniqueName("mpsc")}`;
    const [P, N, size] = [4, 20_000, 65536];
    const sink = consumer(uri, "MPSC", size, { stopAfter: P * N });
    await waitForLine(sink, "ready");
    const producers = range(P).map((id) => producer(uri, "MPSC", size, id, N, 600));
    const results = await Promise.all(producers.map(finish));
    for (const r of results) expect(r.code).toBe(0);
    const got = report<ConsumerReport>(await finish(sink));
    expect(got.broken).toBe(0);
    expect(got.received).toBe(P * N);
    for (const id of range(P)) expect(got.seqs[id]).toEqual(range(N));
  }, 150_000);
});

for (const [mode, producers] of [
  ["SPMC", 1],
  ["MPMC", 3],
] as const) {
  describe(`${mode}: task distribution`, () => {
    test(`${producers} producer(s), 4 consumer processes: every message delivered exactly once overall`, async () => {
      const uri = `ipc://${uniqueName(mode.toLowerCase())}`;
      const [N, size] = [Math.floor(48_000 / producers), 65536];
      const workers = range(4).map(() => consumer(uri, mode, size));
      await Promise.all(workers.map((w) => waitForLine(w, "ready")));
      const sent = await Promise.all(range(producers).map((id) => finish(producer(uri, mode, size, id, N, 400))));
      for (const r of sent) expect(r.code).toBe(0);
      await untilReceived(uri, producers * N);
      for (const w of workers) w.stdin!.end();
      const reports = (await Promise.all(workers.map(finish))).map((r) => report<ConsumerReport>(r));
      const perConsumer = reports.map((r) => r.received);
      console.log(`${mode} with ${producers} producer(s): messages per consumer ${perConsumer.join(", ")}`);
      expect(reports.every((r) => r.broken === 0)).toBe(true);
      for (const id of range(producers)) {
        const all = reports.flatMap((r) => r.seqs[id] ?? []).sort((a, b) => a - b);
        expect(all).toEqual(range(N)); // exactly once: no gap, no duplicate
      }
      expect(perConsumer.reduce((a, b) => a + b, 0)).toBe(producers * N);
    }, 150_000);
  });
}

describe("BROADCAST: pub-sub", () => {
  test("4 subscribers, one late and one slow: each gets every message sent after it subscribed, in order", async () => {
    const uri = `ipc://${uniqueName("bcast")}`;
    const [N, size] = [20_000, 65536];
    const last = N - 1;
    const early = [consumer(uri, "BROADCAST", size, { untilSeq: last }), consumer(uri, "BROADCAST", size, { untilSeq: last })];
    const slow = consumer(uri, "BROADCAST", size, { untilSeq: last, slowEvery: 50 });
    await Promise.all([...early, slow].map((s) => waitForLine(s, "ready")));
    const pub = producer(uri, "BROADCAST", size, 0, N, 300);
    // join once the stream is well under way
    const observer = createChannel(uri, { open: "attach" });
    for (const deadline = Date.now() + 30_000; observer.stats().messagesSent < 2000 && Date.now() < deadline; ) await Bun.sleep(2);
    observer.close();
    const late = consumer(uri, "BROADCAST", size, { untilSeq: last });
    const published = report<{ fullEvents: number }>(await finish(pub));
    const [e1, e2, s, l] = (await Promise.all([...early, slow, late].map(finish))).map((r) => report<ConsumerReport>(r)) as [ConsumerReport, ConsumerReport, ConsumerReport, ConsumerReport];
    for (const r of [e1, e2, s]) {
      expect(r.broken).toBe(0);
      expect(r.seqs[0]).toEqual(range(N));
    }
    expect(l.broken).toBe(0);
    const first = l.seqs[0]![0]!;
    expect(first).toBeGreaterThan(0);
    expect(l.seqs[0]).toEqual(range(N, first));
    expect(published.fullEvents).toBeGreaterThan(0); // the slow subscriber held the producer back
  }, 150_000);

  for (const how of ["closes", "is killed with SIGKILL"] as const) {
    test(`a subscriber that stops reading holds the producer back until it ${how}`, async () => {
      const uri = `ipc://${uniqueName("bcast-stall")}`;
      const channel = createChannel(uri, { bufferSize: 8192, mode: ChannelMode.BROADCAST, role: "producer" });
      try {
        const stalled = spawnBun(fixture("stall_subscriber.ts"), [uri], { stdin: "pipe" });
        await waitForLine(stalled, "ready");
        let sent = 0;
        for (let m = channel.tryAlloc(ByteVector, 100); m; m = channel.tryAlloc(ByteVector, 100), sent++) channel.send(m);
        expect(sent).toBe(Math.floor(8192 / 128)); // a 100-byte message takes 128 bytes of ring
        if (how === "closes") stalled.stdin!.end();
        else stalled.kill("SIGKILL");
        await stalled.exited;
        const deadline = Date.now() + 5_000;
        let room = channel.tryAlloc(ByteVector, 100);
        while (!room && Date.now() < deadline) {
          await Bun.sleep(1);
          room = channel.tryAlloc(ByteVector, 100);
        }
        expect(room).not.toBeNull();
        channel.send(room!);
      } finally {
        channel.close();
      }
    });
  }

  test("with no subscriber the producer never fills up: messages are for subscribers to come", () => {
    const channel = createChannel(`ipc://${uniqueName("bcast-none")}`, { bufferSize: 4096, mode: ChannelMode.BROADCAST });
    for (let i = 0; i < 1000; i++) channel.send(new ByteVector(channel, 100));
    channel.close();
  });
});

describe("roles per mode", () => {
  const cases: Array<[string, "producer" | "consumer", boolean]> = [
    ["MPSC", "producer", true],
    ["MPSC", "consumer", false],
    ["SPMC", "producer", false],
    ["SPMC", "consumer", true],
    ["MPMC", "producer", true],
    ["MPMC", "consumer", true],
    ["BROADCAST", "producer", false],
    ["BROADCAST", "consumer", true],
  ];
  for (const [mode, role, many] of cases) {
    test(`${mode}: a second live ${role} is ${many ? "welcome" : "a ChannelRoleError, free again after close"}`, () => {
      const uri = `ipc://${uniqueName(`roles-${mode}`)}`;
      const first = createChannel(uri, { mode: mode as ChannelMode, role, bufferSize: 4096 });
      if (many) createChannel(uri, { role }).close();
      else {
        expect(() => createChannel(uri, { role })).toThrow(ChannelRoleError);
        first.close();
        createChannel(uri, { role }).close();
        return;
      }
      first.close();
    });
  }
});
