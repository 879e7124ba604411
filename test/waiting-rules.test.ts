// The rules of the waiting calls on one handle: waiting sends and allocations leave in call
// order; one receive at a time; an aborted signal takes nothing; a timeout of Infinity (or of 2^31
// ms and more) does not end the wait early.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ByteVector, type Channel, ChannelMode, createChannel, FloatVector, Int32Vector, PsyneError } from "../src/index.ts";
import { setLongTimeout } from "../src/core/waiting.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, uniqueName, waitForLine } from "./helpers";
import { closedAfterEach } from "./helpers/channels.ts";

setDefaultTimeout(60_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const track = closedAfterEach();
function open(tag: string, bufferSize = 4096, mode: ChannelMode = ChannelMode.SPSC): Channel {
  const channel = createChannel(`ipc://${uniqueName(tag)}`, { bufferSize, mode });
  track(channel);
  return channel;
}

/** Resolves "pending" if `promise` has not settled within `ms`. */
const within = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise.then((v) => ({ settled: v }), (e: unknown) => ({ rejected: e })), Bun.sleep(ms).then(() => "pending" as const)]);

describe("waiting sends leave in call order", () => {
  test("a sendAsync() that finds room does not overtake an earlier one still waiting", async () => {
    const ch = open("order");
    let i = 0;
    for (;;) {
      try {
        ch.send(String(i).padEnd(200));
        i++;
      } catch {
        break; // full
      }
    }
    const sends = [ch.sendAsync(String(i++).padEnd(1000))]; // waits for room
    ch.receive()!.release(); // frees one 200-byte record: not enough for the waiting one
    sends.push(ch.sendAsync(String(i++).padEnd(100))); // would fit now, but comes after
    const all = Promise.all(sends);
    const got: number[] = [];
    const take = () => {
      for (let m = ch.receive(); m; m = ch.receive()) got.push(Number.parseInt(m.text(), 10));
    };
    while ((await within(all, 5)) === "pending") take();
    take();
    expect(got).toEqual(Array.from({ length: i - 1 }, (_, k) => k + 1));
  });

  test("allocAsync() calls claim in call order, and a copying send() while they wait throws INVALID_STATE", async () => {
    const ch = open("alloc-order");
    const big = new ByteVector(ch, 4080); // the largest message: the channel is full
    const waiting = [FloatVector.allocAsync(ch, 8), ch.sendAsync("between"), Int32Vector.allocAsync(ch, 8)];
    for (const w of waiting) w.catch(() => {}); // settled below; close() rejects them if a check fails first
    for (const call of [() => ch.send("overtaker"), () => ch.tryAlloc(FloatVector, 1), () => new FloatVector(ch, 1), () => ch.sendJson(1)])
      expect(call).toThrow(/would overtake 3 sendAsync\(\)\/allocAsync\(\) calls of this handle/);
    ch.send(big); // publishing an allocated message needs no room: allowed
    expect(ch.receive(ByteVector)!.length).toBe(4080);
    ch.receive(); // releases it: room for all three
    const [f, , n] = (await Promise.all(waiting)) as [FloatVector, void, Int32Vector];
    f[0] = 1;
    n[0] = 3;
    ch.send(n); // sent out of order, published in claim (call) order
    ch.send(f);
    expect(ch.receive(FloatVector)![0]).toBe(1);
    expect(ch.receive()!.text()).toBe("between");
    expect(ch.receive(Int32Vector)![0]).toBe(3);
    ch.send("after"); // nothing waits now
    expect(ch.receive()!.text()).toBe("after");
  });

  test("20 000 sendAsync() calls without await reach a consumer process in call order", async () => {
    const name = uniqueName("order-proc");
    const ch = createChannel(`ipc://${name}`, { bufferSize: 4096, role: "producer" });
    track(ch);
    const consumer = spawnBun(fixture("ordered_consumer.ts"), [`ipc://${name}`, 20_000], { timeoutMs: 50_000 });
    await waitForLine(consumer, "ready");
    const sends: Promise<void>[] = [];
    for (let i = 0; i < 20_000; i++) {
      sends.push(ch.sendAsync(String(i), { timeout: 20_000 }));
      if (i % 100 === 99) await new Promise((r) => setImmediate(r)); // let wake-ups run now and then
    }
    await Promise.all(sends);
    expect(report(await finish(consumer))).toEqual({ received: 20_000, outOfOrder: 0 });
  });
});

describe("one receive at a time per handle", () => {
  test("a second recv() while one is pending rejects at once with INVALID_STATE; the first gets a valid message", async () => {
    const ch = open("two-recv");
    const first = ch.recv(undefined, { timeout: 5_000 });
    first.catch(() => {});
    const second = { timeout: 1_000 }; // bounded, should it wait
    await expect(ch.recv(undefined, second)).rejects.toMatchObject({ code: "INVALID_STATE" });
    await expect(ch.recv(undefined, second)).rejects.toThrow(/pending: one handle serves one receive at a time/);
    ch.send("hello");
    const m = (await first)!;
    expect(m.text()).toBe("hello");
    expect(m.copy().text()).toBe("hello");
  });

  test("two recv() calls in a row with messages waiting: the second rejects, the first's message stays valid", async () => {
    const ch = open("two-recv-ready");
    ch.send("one");
    ch.send("two");
    const results = await Promise.allSettled([ch.recv(), ch.recv(undefined, { timeout: 1_000 })]);
    expect(results[1]).toMatchObject({ status: "rejected", reason: { code: "INVALID_STATE" } });
    const m = (results[0] as PromiseFulfilledResult<ByteVector | null>).value!;
    expect(m.text()).toBe("one");
    expect((await ch.recv(undefined, { timeout: 1_000 }))!.text()).toBe("two"); // after an await, the next recv() is fine
  });

  test("receive(), receiveSync(), drain() and messages() while a recv() is pending throw INVALID_STATE", async () => {
    const ch = open("recv-others");
    const pending = ch.recv(undefined, { timeout: 5_000 });
    pending.catch(() => {});
    expect(() => ch.receive()).toThrow(PsyneError);
    expect(() => ch.receive()).toThrow(/receive\(\) on .* while this handle's recv\(\) is pending/);
    expect(() => ch.receiveSync(undefined, 0)).toThrow(/INVALID_STATE|pending/);
    expect(() => ch.drain(() => {})).toThrow(/pending/);
    expect(() => ch.drainBytes(() => {})).toThrow(/pending/);
    expect(await within(ch.messages().next(), 1_000)).toMatchObject({ rejected: { code: "INVALID_STATE" } });
    ch.send("x");
    expect((await pending)!.text()).toBe("x");
  });

  test("a running messages() loop is the handle's pending receive: recv() and another loop reject, and break frees the handle", async () => {
    const ch = open("loop");
    ch.send("a");
    ch.send("b");
    for await (const m of ch.messages()) {
      expect(m.text()).toBe("a");
      await expect(ch.recv(undefined, { timeout: 1_000 })).rejects.toMatchObject({ code: "INVALID_STATE" });
      expect(await within(ch.messages().next(), 1_000)).toMatchObject({ rejected: { code: "INVALID_STATE" } });
      expect(() => ch.receive()).toThrow(/messages\(\) is pending/);
      break;
    }
    expect((await ch.recv(undefined, { timeout: 1_000 }))!.text()).toBe("b");
  });

  test("a consumer loop that awaits each recv() still works, and receive() right after an await is fine", async () => {
    const ch = open("sequential");
    for (let i = 0; i < 5; i++) ch.send(String(i));
    const got: string[] = [];
    for (let i = 0; i < 4; i++) got.push((await ch.recv(undefined, { timeout: 1_000 }))!.text());
    got.push(ch.receive()!.text());
    expect(got).toEqual(["0", "1", "2", "3", "4"]);
  });
});

describe("an aborted signal takes nothing", () => {
  test("recv() with an already-aborted signal rejects and leaves the message in the channel", async () => {
    const ch = open("abort-recv");
    ch.send("keep me");
    const reason = new Error("stop");
    await expect(ch.recv(undefined, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(ch.receive()!.text()).toBe("keep me");
  });

  test("messages() stops at the next message once its signal aborts, while messages keep coming", async () => {
    const ch = open("abort-loop", 65536);
    for (let i = 0; i < 100; i++) ch.send(String(i));
    const controller = new AbortController();
    const seen: string[] = [];
    const loop = (async () => {
      for await (const m of ch.messages(undefined, { signal: controller.signal })) {
        seen.push(m.text());
        if (seen.length === 3) controller.abort(new Error("enough"));
      }
    })();
    await expect(loop).rejects.toThrow("enough");
    expect(seen).toEqual(["0", "1", "2"]);
    expect(ch.receive()!.text()).toBe("3"); // the rest are still there
  });

  test("messages() with an already-aborted signal takes nothing", async () => {
    const ch = open("abort-loop-early");
    ch.send("first");
    await expect(ch.messages(undefined, { signal: AbortSignal.abort() }).next()).rejects.toMatchObject({ name: "AbortError" });
    expect(ch.receive()!.text()).toBe("first");
  });

  test("sendAsync() and allocAsync() with an aborted signal send and allocate nothing", async () => {
    const ch = open("abort-send");
    await expect(ch.sendAsync("no", { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: "AbortError" });
    await expect(FloatVector.allocAsync(ch, 4, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: "AbortError" });
    expect(ch.stats()).toMatchObject({ messagesSent: 0, bytesInUse: 0 });
  });
});

describe("timeouts of Infinity and of 2^31 ms or more", () => {
  for (const timeout of [Number.POSITIVE_INFINITY, 2 ** 31, 2 ** 40]) {
    test(`recv(), sendAsync() and allocAsync() with timeout ${timeout} wait instead of ending at once`, async () => {
      const empty = open("inf-recv");
      const recv = empty.recv(undefined, { timeout });
      expect(await within(recv, 200)).toBe("pending");
      empty.send("late");
      expect((await recv)!.text()).toBe("late");

      const full = open("inf-send");
      const big = new ByteVector(full, 4000);
      full.send(big);
      const send = full.sendAsync(new Uint8Array(100), { timeout });
      const alloc = FloatVector.allocAsync(full, 4, { timeout });
      send.catch(() => {});
      alloc.catch(() => {});
      expect(await within(Promise.all([send, alloc]), 200)).toBe("pending");
      full.receive()!.release();
      await send;
      (await alloc).discard();
    });
  }

  test("receiveSync() with a timeout of 2^31 ms waits for a message from another process", async () => {
    const name = uniqueName("inf-sync");
    const child = spawnBun(fixture("waiter.ts"), ["sync", `ipc://${name}`, 2 ** 31], { timeoutMs: 30_000 });
    await waitForLine(child, "ready");
    await Bun.sleep(200);
    const ch = createChannel(`ipc://${name}`, { role: "producer" });
    track(ch);
    const v = new Int32Vector(ch, 1);
    v[0] = 11;
    ch.send(v);
    const result = report<{ value: number; waitedMs: number }>(await finish(child));
    expect(result.value).toBe(11);
    expect(result.waitedMs).toBeGreaterThanOrEqual(150);
  });

  test("setLongTimeout() fires after short delays, never for Infinity, not early for 2^31 ms, and cancels", async () => {
    const fired: string[] = [];
    setLongTimeout(() => fired.push("10ms"), 10);
    const cancelInfinite = setLongTimeout(() => fired.push("Infinity"), Number.POSITIVE_INFINITY);
    const cancelLong = setLongTimeout(() => fired.push("2^31"), 2 ** 31);
    const cancelled = setLongTimeout(() => fired.push("cancelled"), 5);
    cancelled();
    await Bun.sleep(100);
    expect(fired).toEqual(["10ms"]);
    cancelInfinite();
    cancelLong();
    expect(() => setLongTimeout(() => {}, -1)).toThrow(/timeout/);
    expect(() => setLongTimeout(() => {}, Number.NaN)).toThrow(/timeout/);
  });
});
