// The rules of the waiting calls on one handle: a timeout of Infinity (or of 2^31 ms and more)
// does not end the wait early.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ByteVector, type Channel, ChannelMode, createChannel, FloatVector, Int32Vector, removeChannel } from "../src/index.ts";
import { setLongTimeout } from "../src/core/waiting.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, uniqueName, waitForLine } from "./helpers";

setDefaultTimeout(60_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const opened: Channel[] = [];
function open(tag: string, bufferSize = 4096, mode: ChannelMode = ChannelMode.SPSC): Channel {
  const channel = createChannel(`ipc://${uniqueName(tag)}`, { bufferSize, mode });
  opened.push(channel);
  return channel;
}
afterEach(() => {
  for (const c of opened.splice(0)) {
    c.close();
    removeChannel(c.uri);
  }
});

/** Resolves "pending" if `promise` has not settled within `ms`. */
const within = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise.then((v) => ({ settled: v }), (e: unknown) => ({ rejected: e })), Bun.sleep(ms).then(() => "pending" as const)]);

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
    opened.push(ch);
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
