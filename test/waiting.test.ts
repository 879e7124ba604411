// Waiting without spinning, across processes: recv, for await, receiveSync, sendAsync and
// allocAsync; no lost wake-up in 10 000 parked round trips; near-zero CPU while parked.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readdirSync } from "node:fs";
import { ByteVector, ChannelFullError, createChannel, FloatVector, Int32Vector, removeChannel } from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, testLibrary, uniqueName, waitForLine } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const waiter = (...args: (string | number)[]) => spawnBun(fixture("waiter.ts"), args, { timeoutMs: 60_000 });
const uri = (tag: string) => `ipc://${uniqueName(tag)}`;

function sendInt(channel: ReturnType<typeof createChannel>, value: number): void {
  const v = new Int32Vector(channel, 1);
  v[0] = value;
  channel.send(v);
}

describe("await recv()", () => {
  test("resolves when another process sends", async () => {
    const u = uri("recv");
    const child = waiter("recv", u, 20_000);
    await waitForLine(child, "ready");
    const ch = createChannel(u, { role: "producer" });
    sendInt(ch, 77);
    expect(report(await finish(child))).toEqual({ value: 77 });
    ch.close();
  });

  test("resolves null on timeout, and the process then exits by itself", async () => {
    const result = await finish(waiter("recv", uri("recv-timeout"), 50));
    expect(report(result)).toEqual({ value: null });
    expect(result.code).toBe(0);
  });

  test("rejects with AbortError when its signal aborts", async () => {
    const ch = createChannel(uri("abort"), 4096);
    const controller = new AbortController();
    const pending = ch.recv(undefined, { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: "AbortError" });
    const already = ch.recv(undefined, { signal: AbortSignal.abort() });
    await expect(already).rejects.toMatchObject({ name: "AbortError" });
    ch.close();
  });

  test("close() rejects a pending recv with CHANNEL_CLOSED", async () => {
    const ch = createChannel(uri("close"), 4096);
    const pending = ch.recv();
    ch.close();
    await expect(pending).rejects.toMatchObject({ code: "CHANNEL_CLOSED" });
  });

  test("a parked recv keeps its process alive until a message comes", async () => {
    const u = uri("alive");
    const child = waiter("recv", u, 30_000);
    await waitForLine(child, "ready");
    await Bun.sleep(300); // long enough for an unref'd wait to have let the process exit
    expect(child.exitCode).toBeNull();
    const ch = createChannel(u, { role: "producer" });
    sendInt(ch, 5);
    const result = await finish(child);
    expect(report(result)).toEqual({ value: 5 });
    ch.close();
  });

  test("a process parked in recv() for 2 s uses under 5% of a core", async () => {
    const result = report<{ cpuMs: number; wallMs: number }>(await finish(waiter("idle", uri("idle"), 2000)));
    console.log(`parked 2 s: ${result.cpuMs.toFixed(1)} ms of CPU in ${result.wallMs.toFixed(0)} ms`);
    expect(result.wallMs).toBeGreaterThanOrEqual(1900);
    expect(result.cpuMs / result.wallMs).toBeLessThan(0.05);
  });
});

describe("for await and drain", () => {
  test("for await over 100 000 messages from another process receives all, in order", async () => {
    const u = uri("stream");
    const ch = createChannel(u, { bufferSize: 65536, role: "producer" }); // small: it wraps 30 times
    const child = waiter("stream", u, 100_000);
    await waitForLine(child, "ready");
    for (let i = 0; i < 100_000; i++) {
      const v = await Int32Vector.allocAsync(ch, 1, { timeout: 10_000 });
      v[0] = i;
      ch.send(v);
    }
    expect(report(await finish(child))).toEqual({ received: 100_000, wrong: 0 });
    ch.close();
  });

  test("drain() hands over everything queued, up to max, and releases each", () => {
    const ch = createChannel(uri("drain"), 65536);
    for (let i = 0; i < 10; i++) sendInt(ch, i);
    const seen: number[] = [];
    expect(ch.drain((m: Int32Vector) => seen.push(m[0]!), 4, Int32Vector)).toBe(4);
    expect(ch.drain((m: Int32Vector) => seen.push(m[0]!))).toBe(6);
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(ch.stats().bytesInUse).toBe(0);
    ch.close();
  });
});

test("10 000 round trips between two processes, both sides parking, none stuck", async () => {
  const u = uri("pingpong");
  const parkAtOnce = { timeoutMs: 60_000, env: { PSYNE_SPIN_US: "0" } }; // no spin: every wait parks
  const pong = spawnBun(fixture("waiter.ts"), ["pong", u], parkAtOnce);
  await waitForLine(pong, "ready");
  const ping = spawnBun(fixture("waiter.ts"), ["ping", u, 10_000], parkAtOnce);
  const [a, b] = await Promise.all([finish(ping), finish(pong)]);
  const pinged = report<{ count: number; wrong: number; elapsedMs: number }>(a);
  expect(pinged).toMatchObject({ count: 10_000, wrong: 0 });
  expect(report(b)).toMatchObject({ count: 10_000, wrong: 0 });
  console.log(`10 000 parked round trips in ${pinged.elapsedMs.toFixed(0)} ms (${((pinged.elapsedMs * 500) / 10_000).toFixed(1)} us one-way)`);
}, 120_000);

// The same with the safety re-poll switched off (test library, PSY_TEST_DISABLE=safety): every
// wake-up must come from the sender, by either way of waking an event loop; a lost one would leave
// a round trip waiting for recv()'s 10 s timeout, and count as wrong.
for (const wake of ["bell", "thread"] as const)
  test(`10 000 parked round trips with no safety re-poll, woken by ${wake === "bell" ? "the doorbell" : "a waiter thread"} alone`, async () => {
    const u = uri(`pingpong-${wake}`);
    const env = { PSYNE_SPIN_US: "0", PSYNE_WAKE: wake, PSYNE_LIB: testLibrary(), PSY_TEST_DISABLE: "safety" };
    const pong = spawnBun(fixture("waiter.ts"), ["pong", u], { timeoutMs: 60_000, env });
    await waitForLine(pong, "ready");
    const ping = spawnBun(fixture("waiter.ts"), ["ping", u, 10_000], { timeoutMs: 60_000, env });
    const [a, b] = await Promise.all([finish(ping), finish(pong)]);
    expect(report(a)).toMatchObject({ count: 10_000, wrong: 0 });
    expect(report(b)).toMatchObject({ count: 10_000, wrong: 0 });
  }, 120_000);

test("with the default short spin, a fast ping-pong mostly avoids parking (and still loses nothing)", async () => {
  const u = uri("pingpong-spin");
  const pong = waiter("pong", u);
  await waitForLine(pong, "ready");
  const ping = waiter("ping", u, 10_000);
  const [a, b] = await Promise.all([finish(ping), finish(pong)]);
  expect(report(a)).toMatchObject({ count: 10_000, wrong: 0 });
  expect(report(b)).toMatchObject({ count: 10_000, wrong: 0 });
  console.log(`10 000 round trips with spinning first: ${report<{ elapsedMs: number }>(a).elapsedMs.toFixed(0)} ms`);
});

describe("receiveSync", () => {
  test("times out with null", async () => {
    const result = report<{ value: null; waitedMs: number }>(await finish(waiter("sync", uri("sync-timeout"), 100)));
    expect(result.value).toBeNull();
    expect(result.waitedMs).toBeGreaterThanOrEqual(99);
  });

  test("a signal with a JS handler interrupts it, and the handler then runs", async () => {
    const child = waiter("sync-signal", uri("sync-signal"), 20_000);
    await waitForLine(child, "ready");
    // a signal that lands before the child is in the kernel wait runs its handler without
    // interrupting anything (as for any blocking call): keep signalling until one lands inside
    const signaller = setInterval(() => child.exitCode === null && child.kill("SIGUSR1"), 50);
    const result = report<{ value: null; waitedMs: number; handled: boolean }>(await finish(child));
    clearInterval(signaller);
    expect(result.value).toBeNull();
    expect(result.waitedMs).toBeLessThan(20_000);
    expect(result.handled).toBe(true);
  });

  test("returns a message sent from another process", async () => {
    const u = uri("sync");
    const child = waiter("sync", u, 20_000);
    await waitForLine(child, "ready");
    const ch = createChannel(u, { role: "producer" });
    sendInt(ch, 9);
    expect(report(await finish(child))).toMatchObject({ value: 9 });
    ch.close();
  });
});

describe("waiting for room", () => {
  test("sendAsync and allocAsync wait while the channel is full and finish as the consumer frees room", async () => {
    const u = uri("room");
    const ch = createChannel(u, { bufferSize: 4096, role: "consumer" });
    const child = waiter("fill", u, 40);
    await waitForLine(child, "full after");
    const values: number[] = [];
    while (values.length < 40) {
      const m = await ch.recv(undefined, { timeout: 10_000 });
      if (!m) throw new Error(`stuck after ${values.length} messages`);
      values.push(m.type === "FloatVector" ? (m as FloatVector)[0]! : new Float32Array(m.bytes().slice().buffer)[0]!);
    }
    expect(values).toEqual(Array.from({ length: 40 }, (_, i) => i));
    const result = report<{ sent: number; fullEvents: number }>(await finish(child));
    expect(result.sent).toBe(40);
    expect(result.fullEvents).toBeGreaterThan(0);
    ch.close();
  });

  test("a handle closed while a producer waits on its doorbell leaves no socket behind (closing rings that bell)", async () => {
    const u = uri("bellclose");
    const owner = createChannel(u, { bufferSize: 4096, role: "consumer" }); // keeps the channel while handles come and go
    const child = waiter("fill", u, 1000);
    await waitForLine(child, "full after");
    owner.close();
    const fds = () => readdirSync("/proc/self/fd").length;
    let before = 0;
    for (let round = 0; round < 40; round++) {
      if (round === 1) before = fds(); // after the first round: this process's own doorbell is open by then
      const ch = createChannel(u, { role: "consumer" });
      // hold one message: close() releases it, which frees room and rings the waiting producer's bell
      expect(await ch.recv(undefined, { timeout: 10_000 })).not.toBeNull();
      ch.close();
    }
    // at most this process's own doorbell connections, opened once (2 seen, also over 120 rounds); before
    // the fix a socket for every close that rang the peer's bell (12 more over these 40 rounds)
    expect(fds() - before).toBeLessThan(5);
    child.kill("SIGKILL");
    await child.exited;
    removeChannel(u.slice("ipc://".length));
  });

  test("sendAsync rejects with ChannelFullError when the timeout passes first", async () => {
    const ch = createChannel(uri("room-timeout"), 4096);
    ch.send(new ByteVector(ch, 4000));
    await expect(ch.sendAsync(new Uint8Array(500), { timeout: 30 })).rejects.toBeInstanceOf(ChannelFullError);
    await expect(FloatVector.allocAsync(ch, 200, { timeout: 30 })).rejects.toThrow(/still full after 30 ms/);
    ch.receive()!.release();
    await ch.sendAsync(new Uint8Array(500), { timeout: 30 });
    ch.receive();
    ch.close();
  });
});
