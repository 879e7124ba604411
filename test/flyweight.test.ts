// Struct writers and readers (T.writer / T.reader): fields written and read in place, no object per
// message; every mode across processes, mixed with new T(channel) / recv(T) on the same handles;
// type mismatch; 100 000 records around a small ring; a reader killed holding a record; misuse
// that must never reach channel memory.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ByteVector, ChannelFullError, ChannelMode, createChannel, defineMessage, MessageTypeError, PsyneError } from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, stdoutLine, uniqueName, waitForLine } from "./helpers";
import { Tick, writeTick } from "./helpers/tick.ts";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const uri = (tag: string) => `ipc://${uniqueName(tag)}`;
const Point = defineMessage("FlyPoint", { id: "u32", x: "f64", y: "f32", big: "i64", on: "bool", data: ["f32", 4], small: ["u8", 3] });

const invalidState = (fn: () => unknown) => {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(PsyneError);
  expect((error as PsyneError).code).toBe("INVALID_STATE");
};

describe("in one process", () => {
  test("a writer's fields land in the record; a reader reads them in place; both are one object for every message", () => {
    const ch = createChannel(uri("basic"), 65536);
    const w = Point.writer(ch);
    const r = Point.reader(ch);
    for (let i = 0; i < 1000; i++) {
      expect(w.claim()).toBe(true);
      w.id = i;
      w.x = i / 3;
      w.y = 0.5;
      w.big = -BigInt(i) * 10_000_000_000n;
      w.on = i % 2 === 1;
      for (let k = 0; k < 4; k++) w.data.set(k, i + k);
      w.small.copyFrom([1, 2, 255]);
      expect(w.x).toBe(i / 3); // a writer reads back what it wrote
      w.send();
      expect(r.next()).toBe(true);
      expect([r.id, r.x, r.y, r.big, r.on]).toEqual([i, i / 3, 0.5, -BigInt(i) * 10_000_000_000n, i % 2 === 1]);
      expect(r.data.toArray()).toEqual([i, i + 1, i + 2, i + 3]);
      expect([r.small.get(0), r.small.get(1), r.small.get(2), r.small.length]).toEqual([1, 2, 255, 3]);
    }
    expect(r.next()).toBe(false);
    expect(ch.stats().bytesInUse).toBe(0); // next() released the last one
    ch.close();
  });

  test("mixed with new T(channel), send(), receive(T) and receive() on the same handle", () => {
    const ch = createChannel(uri("mixed"), 65536);
    const w = Point.writer(ch);
    const r = Point.reader(ch);
    const m = new Point(ch);
    m.id = 1;
    ch.send(m);
    w.claim();
    w.id = 2;
    w.send();
    ch.send("text between");
    w.claim();
    w.id = 3;
    w.send();
    expect(r.next()).toBe(true);
    expect(r.id).toBe(1);
    const got = ch.receive(Point)!; // releases the reader's record and moves the reader off it
    expect(got.id).toBe(2);
    invalidState(() => r.id);
    expect(() => r.next()).toThrow(MessageTypeError); // the text is next
    expect(ch.receive()!.text()).toBe("text between");
    expect(r.next()).toBe(true);
    expect(r.id).toBe(3);
    invalidState(() => got.id); // the reader's next() released the received message
    ch.close();
  });

  test("next() on another type throws MessageTypeError and leaves the message for receive()", () => {
    const ch = createChannel(uri("type"), 65536);
    const Other = defineMessage("FlyOther", { id: "u32", x: "f64", y: "f32", big: "i64", on: "bool", data: ["f32", 4], small: ["u8", 2] });
    const o = new Other(ch);
    o.id = 7;
    ch.send(o);
    ch.send(new Uint8Array(100)); // bytes, long enough for a Point: still another type
    const r = Point.reader(ch);
    expect(() => r.next()).toThrow(MessageTypeError);
    expect(() => r.next()).toThrow(/is a FlyOther, not a FlyPoint/);
    invalidState(() => r.id);
    expect(ch.receive(Other)!.id).toBe(7);
    expect(() => r.next()).toThrow(/is a ByteVector, not a FlyPoint/);
    expect(ch.receive(ByteVector)!.length).toBe(100);
    expect(r.next()).toBe(false);
    ch.close();
  });

  test("claim() is false when full, claimAsync() waits for room and times out with ChannelFullError", async () => {
    const ch = createChannel(uri("full"), 4096);
    const w = Point.writer(ch);
    let sent = 0;
    while (w.claim()) {
      w.id = sent++;
      w.send();
    }
    expect(sent).toBeGreaterThan(10);
    await expect(w.claimAsync({ timeout: 20 })).rejects.toBeInstanceOf(ChannelFullError);
    const waiting = w.claimAsync({ timeout: 10_000 });
    invalidState(() => w.claim()); // one claim at a time per writer
    const r = Point.reader(ch);
    expect(r.next()).toBe(true);
    r.release();
    await waiting;
    expect(w.claimed).toBe(true);
    w.id = 99;
    w.send();
    while (r.next()); // a channel left holding messages would stay in /dev/shm
    ch.close();
  });

  test("nextAsync() waits for a message, resolves false on timeout, and is the handle's pending receive", async () => {
    const ch = createChannel(uri("next-async"), 65536);
    const r = Point.reader(ch);
    expect(await r.nextAsync({ timeout: 10 })).toBe(false);
    const pending = r.nextAsync({ timeout: 10_000 });
    expect(() => ch.receive()).toThrow(/pending/);
    const w = Point.writer(ch);
    w.claim();
    w.id = 5;
    w.send();
    expect(await pending).toBe(true);
    expect(r.id).toBe(5);
    await expect(r.nextAsync({ signal: AbortSignal.abort() })).rejects.toMatchObject({ name: "AbortError" });
    ch.close();
  });

  test("misuse never writes into a sent record: fields throw INVALID_STATE before claim() and after send() or discard()", () => {
    const ch = createChannel(uri("misuse-write"), 65536);
    const w = Point.writer(ch);
    const data = w.data; // the accessor outlives each record, and follows the writer
    invalidState(() => (w.id = 1)); // before any claim
    invalidState(() => w.x);
    invalidState(() => data.set(0, 1));
    invalidState(() => w.send());
    w.claim();
    w.id = 11;
    w.x = 1.25;
    data.set(0, 2.5);
    w.send();
    invalidState(() => (w.id = 666));
    invalidState(() => (w.x = 666));
    invalidState(() => (w.big = 666n));
    invalidState(() => (w.on = false));
    invalidState(() => data.set(0, 666));
    invalidState(() => data.copyFrom([666]));
    invalidState(() => w.small.set(1, 66));
    expect(w.claim()).toBe(true);
    w.discard();
    invalidState(() => (w.id = 667));
    const m = ch.receive(Point)!;
    expect([m.id, m.x, m.data[0]]).toEqual([11, 1.25, 2.5]); // untouched by the writes after send()
    expect(() => data.set(4, 1)).toThrow(/out of range/); // an index past the field never reaches the next record
    ch.close();
  });

  test("misuse never reads or writes a record the reader let go: fields throw after release(), a failed next() and another receive", () => {
    const ch = createChannel(uri("misuse-read"), 65536);
    const r = Point.reader(ch);
    invalidState(() => r.id); // before any next()
    const w = Point.writer(ch);
    for (let i = 0; i < 3; i++) {
      w.claim();
      w.id = i;
      w.send();
    }
    expect(r.next()).toBe(true);
    expect(() => ((r as { id: number }).id = 5)).toThrow(TypeError); // a reader's fields are read-only
    expect(() => (r.data as unknown as { set(i: number, x: number): void }).set(0, 1)).toThrow(/read-only/);
    r.release();
    invalidState(() => r.id);
    invalidState(() => r.data.get(0));
    expect(r.next()).toBe(true);
    ch.receive(); // another receive on the handle releases the reader's record
    invalidState(() => r.x);
    expect(r.next()).toBe(false);
    invalidState(() => r.id);
    r.release(); // nothing held: nothing happens
    ch.close();
  });

  test("a closed channel: claim() and next() throw CHANNEL_CLOSED, fields never touch the unmapped memory", () => {
    const ch = createChannel(uri("closed"), 65536);
    const w = Point.writer(ch);
    const r = Point.reader(ch);
    w.claim();
    w.id = 1;
    w.send();
    r.next();
    w.claim();
    ch.close();
    expect(() => w.claim()).toThrow(PsyneError);
    expect(() => w.send()).toThrow(/closed/);
    expect(() => r.next()).toThrow(/closed/);
    expect(() => r.id).toThrow(); // moved off at close, or a detached view: never the unmapped memory
    expect(() => (w.id = 2)).toThrow();
  });

  test("writer() and reader() check their channel, and a field named like a flyweight member", () => {
    expect(() => Point.writer({} as never)).toThrow(/needs a channel/);
    expect(() => Point.reader(null as never)).toThrow(/needs a channel/);
    const Odd = defineMessage("FlyOdd", { next: "u32", claimed: "u8" });
    const ch = createChannel(uri("odd"), 4096);
    expect(() => Odd.reader(ch)).toThrow(/field next/);
    const m = new Odd(ch); // the struct itself is fine
    m.next = 3;
    ch.send(m);
    expect(ch.receive(Odd)!.next).toBe(3);
    ch.close();
  });
});

type Produced = { sent: number; misuseTried: number; misuseThrew: number };
type Consumed = { received: number; broken: number; seqs: Record<string, number[]> };
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const peer = (args: (string | number)[]) => spawnBun(fixture("flyweight_peer.ts"), args, { timeoutMs: 120_000, stdin: "pipe" });

/** Waits (bounded) until the channel's consumers have released `total` messages. */
async function untilReceived(u: string, total: number): Promise<void> {
  const observer = createChannel(u, { open: "attach" });
  try {
    const deadline = Date.now() + 90_000;
    while (observer.stats().messagesReceived < total) {
      if (Date.now() > deadline) throw new Error(`only ${observer.stats().messagesReceived}/${total} received`);
      await Bun.sleep(5);
    }
  } finally {
    observer.close();
  }
}

describe("across processes, every mode, writers and readers mixed with new T / recv(T)", () => {
  const cases = [
    { mode: ChannelMode.SPSC, producers: 1, consumers: 1 },
    { mode: ChannelMode.MPSC, producers: 2, consumers: 1 },
    { mode: ChannelMode.SPMC, producers: 1, consumers: 2 },
    { mode: ChannelMode.MPMC, producers: 2, consumers: 2 },
    { mode: ChannelMode.BROADCAST, producers: 1, consumers: 2 },
  ];
  for (const { mode, producers, consumers } of cases) {
    test(`${mode}: ${producers} producer(s), ${consumers} consumer(s): every message intact, exactly once (BROADCAST: once per subscriber), misuse never lands`, async () => {
      const u = uri(mode.toLowerCase());
      const N = 6000;
      const size = 16384; // small: it wraps many times
      const broadcast = mode === ChannelMode.BROADCAST;
      const readers = range(consumers).map((i) => peer(["consume", u, mode, size, i % 2 ? "mixed" : "reader", broadcast ? producers * N : 0]));
      await Promise.all(readers.map((c) => waitForLine(c, "ready")));
      const writers = range(producers).map((id) => peer(["produce", u, mode, size, id, N, id % 2 ? "writer" : "mixed"]));
      const sent = (await Promise.all(writers.map(finish))).map((r) => report<Produced>(r));
      for (const s of sent) {
        expect(s.sent).toBe(N);
        expect(s.misuseThrew).toBe(s.misuseTried);
      }
      if (!broadcast) {
        await untilReceived(u, producers * N);
        for (const c of readers) c.stdin!.end();
      }
      const got = (await Promise.all(readers.map(finish))).map((r) => report<Consumed>(r));
      for (const g of got) expect(g.broken).toBe(0);
      for (const id of range(producers)) {
        if (broadcast) for (const g of got) expect(g.seqs[id]).toEqual(range(N));
        else expect(got.flatMap((g) => g.seqs[id] ?? []).sort((a, b) => a - b)).toEqual(range(N));
      }
      if (mode === ChannelMode.SPSC || mode === ChannelMode.MPSC) for (const id of range(producers)) expect(got[0]!.seqs[id]).toEqual(range(N)); // in order
    }, 150_000);
  }

  test("100 000 records through a 4 KiB ring (about 2 000 laps), writer and reader parking on full and empty", async () => {
    const u = uri("wrap");
    const N = 100_000;
    const reader = peer(["consume", u, "SPSC", 4096, "reader", N]);
    await waitForLine(reader, "ready");
    const writer = peer(["produce", u, "SPSC", 4096, 0, N, "writer"]);
    expect(report<Produced>(await finish(writer)).sent).toBe(N);
    const got = report<Consumed>(await finish(reader));
    expect(got.broken).toBe(0);
    expect(got.seqs[0]).toEqual(range(N));
  }, 150_000);
});

describe("a reader SIGKILLed while it holds a record", () => {
  for (const mode of [ChannelMode.SPMC, ChannelMode.SPSC]) {
    test(`${mode}: the record it held is delivered again to the next consumer, and nothing is lost or repeated`, async () => {
      const u = uri(`kill-${mode.toLowerCase()}`);
      const ch = createChannel(u, { mode, bufferSize: 65536, role: "producer" });
      const victim = peer(["hold", u, mode]);
      await waitForLine(victim, "ready");
      const w = Tick.writer(ch);
      for (let seq = 0; seq < 3; seq++) {
        w.claim();
        writeTick(w, 0, seq);
        w.send();
      }
      const held = JSON.parse(await stdoutLine(victim, 1)) as unknown;
      expect(held).toEqual({ producer: 0, seq: 0, intact: true });
      victim.kill("SIGKILL");
      await victim.exited;
      const survivor = peer(["consume", u, mode, 65536, "reader", 3]);
      const got = report<Consumed>(await finish(survivor));
      expect(got.broken).toBe(0);
      expect([...got.seqs[0]!].sort()).toEqual([0, 1, 2]); // the held one again, the others once
      ch.close();
    });
  }
});
