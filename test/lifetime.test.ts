// A message's life ends at send(), release(), the same handle's next receive(), or close(): from
// then on every psyne method of it, and of every view made with .as(), throws INVALID_STATE
// instead of reading or releasing a later message; in checked mode (PSYNE_CHECKED=1) its elements
// fail too, where the stale access is.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ByteVector, createChannel, defineMessage, FloatVector, Int32Vector, type Message, PsyneError } from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, uniqueName } from "./helpers";
import { closedAfterEach } from "./helpers/channels.ts";

setDefaultTimeout(60_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const track = closedAfterEach();
function open(tag: string, bufferSize: number) {
  const channel = createChannel(`ipc://${uniqueName(tag)}`, { bufferSize });
  track(channel);
  return channel;
}

const Sample = defineMessage("LifetimeSample", { seq: "u32", value: "f64" });

/** The code of what `f` throws, or "no error". */
function codeOf(f: () => unknown): string {
  try {
    f();
    return "no error";
  } catch (error) {
    return error instanceof PsyneError ? error.code : (error as Error).name;
  }
}

/** Every psyne method a message has, each called once: name -> the code it threw. */
function methodOutcomes(m: Message): Record<string, string> {
  return {
    text: codeOf(() => m.text()),
    bytes: codeOf(() => m.bytes()),
    json: codeOf(() => m.json()),
    copy: codeOf(() => m.copy()),
    as: codeOf(() => m.as(ByteVector)),
    release: codeOf(() => m.release()),
  };
}
const allInvalidState = { text: "INVALID_STATE", bytes: "INVALID_STATE", json: "INVALID_STATE", copy: "INVALID_STATE", as: "INVALID_STATE", release: "INVALID_STATE" };

describe("after release()", () => {
  test("every psyne method of a received message, and of its .as() views, throws INVALID_STATE", () => {
    const ch = open("released", 4096);
    ch.sendJson({ a: 1 });
    const m = ch.receive()!;
    const view = m.as(ByteVector);
    const s = new Sample(ch);
    s.seq = 7;
    ch.send(s);
    m.release();
    expect(methodOutcomes(m)).toEqual(allInvalidState);
    expect(methodOutcomes(view)).toEqual(allInvalidState);
    const r = ch.receive()!; // a struct message received without a type, then viewed as one
    const asSample = r.as(Sample);
    expect(asSample.seq).toBe(7);
    r.release();
    expect(codeOf(() => asSample.seq)).toBe("INVALID_STATE");
    expect(methodOutcomes(asSample)).toEqual(allInvalidState);
  });

  test("the next receive() ends the previous message's life: text() throws instead of reading later messages", () => {
    const ch = open("next-receive", 4096); // small: later messages reuse the first one's space
    ch.send(`message number 0 ${"x".repeat(100)}`);
    const first = ch.receive()!;
    expect(first.text()).toStartWith("message number 0");
    for (let i = 1; i < 100; i++) {
      ch.send(`message number ${i} ${"x".repeat(100)}`);
      ch.receive();
    }
    expect(codeOf(() => first.text())).toBe("INVALID_STATE");
    expect(codeOf(() => first.bytes())).toBe("INVALID_STATE");
    expect(() => first.text()).toThrow(/released \(by release\(\), this handle's next receive\(\), or close\(\)\)/);
  });

  test("a stale .as() view's release() throws, and the message the handle holds now stays valid", () => {
    const ch = open("stale-view", 4096); // holds two 2000-byte records: the third reuses the first's space
    const send = (value: number) => {
      const v = new Int32Vector(ch, 500);
      v.fill(value);
      ch.send(v);
    };
    send(1);
    const first = ch.receive(Int32Vector)!;
    const staleView = first.as(ByteVector);
    send(2);
    ch.receive(Int32Vector); // releases the first
    send(3);
    const third = ch.receive(Int32Vector)!; // where the first was
    expect(codeOf(() => staleView.release())).toBe("INVALID_STATE");
    expect(third.copy()[0]).toBe(3); // still held: not released by the stale view
    expect(ch.stats().bytesInUse).toBeGreaterThan(0);
    third.release();
    expect(ch.stats().bytesInUse).toBe(0);
  });

  test("close() ends the held message's life too", () => {
    const ch = createChannel(`ipc://${uniqueName("close-held")}`, { bufferSize: 4096 });
    ch.send("held");
    const m = ch.receive()!;
    ch.close();
    expect(codeOf(() => m.text())).toBe("INVALID_STATE");
  });

  test("`using` after an explicit release() or send() is silent, and a detached copy's release() is harmless", () => {
    const ch = open("using", 4096);
    ch.send("a");
    {
      using m = ch.receive()!;
      m.release();
    }
    {
      using v = new FloatVector(ch, 1);
      ch.send(v);
    }
    const copy = ch.receive(FloatVector)!.copy();
    copy.release();
    expect(copy.length).toBe(1);
  });
});

describe("after send()", () => {
  test("every psyne method of the sent message, and of its .as() views, throws INVALID_STATE", () => {
    const ch = open("sent", 4096);
    const v = new FloatVector(ch, 4);
    const view = v.as(ByteVector);
    ch.send(v);
    expect(methodOutcomes(v)).toEqual(allInvalidState);
    expect(methodOutcomes(view)).toEqual(allInvalidState);
    expect(codeOf(() => v.discard())).toBe("INVALID_STATE");
    expect(codeOf(() => ch.send(view))).toBe("INVALID_STATE");
    const s = new Sample(ch);
    ch.send(s);
    expect(codeOf(() => (s.value = 1))).toBe("INVALID_STATE");
    expect(() => v.bytes()).toThrow(/already sent/);
  });

  test("sending an .as() view publishes the message once, and both are then sent", () => {
    const ch = open("send-view", 4096);
    const v = new Int32Vector(ch, 2);
    v[0] = 42;
    const view = v.as(ByteVector);
    ch.send(view);
    expect(codeOf(() => ch.send(v))).toBe("INVALID_STATE");
    expect(ch.receive(Int32Vector)![0]).toBe(42);
    expect(ch.receive()).toBeNull();
  });
});

describe("checked mode (PSYNE_CHECKED=1)", () => {
  test("a stale reference fails where it is used and never reaches another message's memory", async () => {
    const child = spawnBun(fixture("checked_mode.ts"), [], { env: { PSYNE_CHECKED: "1" }, timeoutMs: 30_000 });
    const result = report<Record<string, unknown>>(await finish(child));
    expect(result).toEqual({
      // write after send: TypeError from typed-array methods; an index write goes nowhere
      sentFill: "TypeError",
      sentIndexWrite: 0, // the stale vector has length 0
      sentSubarrayFill: "TypeError",
      sentBytes: "INVALID_STATE",
      received: [1, 1, 1, 1], // not -1: the stale writes did not land
      // read after release
      releasedIndexRead: "undefined",
      releasedReduce: "TypeError",
      releasedViewFill: "TypeError",
      releasedBytesRead: "TypeError",
      releasedText: "INVALID_STATE",
      nextReceiveBytesRead: "RangeError", // Buffer.from() of a detached view
      // structs
      structField: "INVALID_STATE",
      structArrayField: "TypeError",
      structReceived: { x: 2, data: [0, 0, 0, 0] },
      structView: "INVALID_STATE",
      // the batch calls
      batchDrained: [1, 2],
      batchKeptWrite: "TypeError",
      batchKeptRead: "TypeError",
      copyAfterRelease: [3, 4],
    });
  });
});
