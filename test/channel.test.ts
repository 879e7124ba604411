// The channel API of SPEC.md in one process: names, open modes, config, errors with their
// values, message types, lifetimes and stats. Cross-process behaviour is in the other files.
import { afterAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { statSync } from "node:fs";
import {
  ByteVector,
  ChannelConfigError,
  ChannelExistsError,
  ChannelFullError,
  ChannelMode,
  ChannelNotFoundError,
  type ChannelOptions,
  createChannel,
  DoubleVector,
  defineMessage,
  FloatVector,
  Int32Vector,
  InvalidChannelNameError,
  MessageTooLargeError,
  MessageTypeError,
  PsyneError,
  removeChannel,
} from "../src/index.ts";
import { ownSegments, uniqueName } from "./helpers";
import { closedAfterEach } from "./helpers/channels.ts";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default

const track = closedAfterEach();
function open(uri: string, sizeOrOptions?: number | ChannelOptions, mode?: ChannelMode) {
  const channel = typeof sizeOrOptions === "object" ? createChannel(uri, sizeOrOptions) : createChannel(uri, sizeOrOptions, mode);
  track(channel);
  return channel;
}
afterAll(() => expect(ownSegments()).toEqual([]));

const uri = (tag: string) => `ipc://${uniqueName(tag)}`;

describe("channel names", () => {
  const bad = ["ipc://", "ipc://a/b", "ipc://..", "ipc://.hidden", "ipc://x y", `ipc://${"a".repeat(201)}`, "bogus://x", "sensor", "ipc:/x", "ipc://ä"];
  for (const name of bad) {
    test(`'${name.slice(0, 40)}' is rejected with InvalidChannelNameError before any system call`, () => {
      expect(() => createChannel(name)).toThrow(InvalidChannelNameError);
    });
  }
  test("a 200-character name of every allowed character works", () => {
    const name = `${uniqueName("n")}-._`.padEnd(200, "Z");
    const channel = open(`ipc://${name}`, { bufferSize: 4096 });
    expect(channel.name).toBe(name);
  });
  test("errors are PsyneErrors with a code", () => {
    try {
      createChannel("ipc://a/b");
      throw new Error("no error");
    } catch (err) {
      expect(err).toBeInstanceOf(PsyneError);
      expect((err as PsyneError).code).toBe("INVALID_CHANNEL_NAME");
    }
  });
});

describe("open modes and configuration", () => {
  test("'attach' to a channel that does not exist throws ChannelNotFoundError", () => {
    expect(() => createChannel(uri("missing"), { open: "attach" })).toThrow(ChannelNotFoundError);
  });
  test("'create' of a channel that exists throws ChannelExistsError", () => {
    const u = uri("exists");
    open(u, { open: "create" });
    expect(() => createChannel(u, { open: "create" })).toThrow(ChannelExistsError);
  });
  test("attaching adopts the existing size and mode", () => {
    const u = uri("adopt");
    open(u, 65536, ChannelMode.SPSC);
    const second = open(u, { open: "attach" });
    expect(second.bufferSize).toBe(65536);
    expect(second.mode).toBe(ChannelMode.SPSC);
  });
  test("a different size or mode throws ChannelConfigError naming both values", () => {
    const u = uri("config");
    open(u, 65536, ChannelMode.SPSC);
    expect(() => createChannel(u, 1 << 20)).toThrow(/bufferSize 65536, asked 1048576/);
    expect(() => createChannel(u, 1 << 20)).toThrow(ChannelConfigError);
    expect(() => createChannel(u, { mode: ChannelMode.MPMC })).toThrow(/mode SPSC, asked MPMC/);
  });
  test("the default buffer is 4 MiB and sizes round up to a power of two", () => {
    expect(open(uri("default")).bufferSize).toBe(4 * 1024 * 1024);
    expect(open(uri("round"), 3000).bufferSize).toBe(4096);
    expect(open(uri("round2"), 100_000).bufferSize).toBe(131072);
  });
  test("too small, too large or non-integer sizes are clear errors", () => {
    expect(() => createChannel(uri("tiny"), 10)).toThrow(/too small/);
    expect(() => createChannel(uri("huge"), 2 ** 31)).toThrow(/larger than the maximum/);
    expect(() => createChannel(uri("frac"), 1.5)).toThrow(PsyneError);
  });
  test("unknown modes and open modes are rejected", () => {
    expect(() => createChannel(uri("m"), { mode: "FIFO" as never })).toThrow(/unknown channel mode/);
    expect(() => createChannel(uri("o"), { open: "maybe" as never })).toThrow(/unknown open mode/);
  });
  test("the segment is owner-only by default, and permissions set its mode", () => {
    const a = open(uri("perm"));
    expect(statSync(`/dev/shm/psyne.${a.name}`).mode & 0o777).toBe(0o600);
    const b = open(uri("perm2"), { permissions: 0o640 });
    expect(statSync(`/dev/shm/psyne.${b.name}`).mode & 0o777).toBe(0o640);
  });
  test("an unknown scheme is InvalidChannelNameError naming the schemes there are", () => {
    expect(() => createChannel("ftp://localhost:5555")).toThrow(/unknown channel scheme 'ftp:\/\/'.*ipc:\/\/, memory:\/\//);
  });
});

describe("sending and receiving", () => {
  test("vectors are typed arrays written in place and read in place", () => {
    const ch = open(uri("vec"), 65536);
    const f = new FloatVector(ch, 3);
    f.set([1.5, 2.5, 3.5]);
    ch.send(f);
    const d = new DoubleVector(ch, 2);
    d[0] = Math.PI;
    ch.send(d);
    const i = new Int32Vector(ch, 1);
    i[0] = -7;
    ch.send(i);
    const b = new ByteVector(ch, 4);
    b.fill(9);
    ch.send(b);

    const rf = ch.receive(FloatVector)!;
    expect(rf).toBeInstanceOf(Float32Array);
    expect(rf).toBeInstanceOf(FloatVector);
    expect([...rf]).toEqual([1.5, 2.5, 3.5]);
    expect(rf.reduce((a, v) => a + v, 0)).toBe(7.5);
    expect(rf.subarray(1)).toEqual(new Float32Array([2.5, 3.5]));
    expect(ch.receive(DoubleVector)![0]).toBe(Math.PI);
    expect(ch.receive(Int32Vector)![0]).toBe(-7);
    expect([...ch.receive(ByteVector)!]).toEqual([9, 9, 9, 9]);
    expect(ch.receive()).toBeNull();
  });

  test("a handle that sends and receives keeps each message's own size (zero-length included)", () => {
    const ch = open(uri("both"), 4096);
    ch.send(new DoubleVector(ch, 0));
    expect(ch.receive(DoubleVector)!.length).toBe(0);
    ch.send("hello"); // claimed while the empty vector is still held
    expect(ch.receive()!.text()).toBe("hello");
    expect(ch.sendBatch(3, 40, (b, o, i) => (b[o] = i))).toBe(3);
    const got: number[] = [];
    expect(ch.drainBytes((b, o, length) => got.push(b[o]!, length))).toBe(3);
    expect(got).toEqual([0, 40, 1, 40, 2, 40]);
    expect(ch.stats().bytesInUse).toBe(0);
  });

  test("receive() on an empty channel returns null at once", () => {
    expect(open(uri("empty"), 4096).receive()).toBeNull();
  });

  test("strings, typed arrays and JSON are copied in and decoded on receipt", () => {
    const ch = open(uri("copy"), 65536);
    ch.send("héllo");
    ch.send(new Float64Array([1, 2]));
    ch.sendJson({ a: [1, "b"], c: null });
    const t = ch.receive()!;
    expect(t.type).toBe("text");
    expect(t.text()).toBe("héllo");
    const bytes = ch.receive(ByteVector)!;
    expect(new Float64Array(bytes.slice().buffer)).toEqual(new Float64Array([1, 2]));
    const j = ch.receive()!;
    expect(j.type).toBe("json");
    expect(j.json()).toEqual({ a: [1, "b"], c: null });
  });

  test("receive(T) of another type throws MessageTypeError and leaves the message", () => {
    const ch = open(uri("type"), 65536);
    ch.send(new FloatVector(ch, 2));
    expect(() => ch.receive(Int32Vector)).toThrow(MessageTypeError);
    expect(() => ch.receive(Int32Vector)).toThrow(/is a FloatVector, not a Int32Vector/);
    const any = ch.receive()!;
    expect(any.type).toBe("FloatVector");
    expect(any).toBeInstanceOf(FloatVector);
    expect(any.as(ByteVector).length).toBe(8);
  });

  test("defineMessage structs have typed fields and travel by type id", () => {
    const Request = defineMessage("Request", { request_id: "u64", op: "u32", value: "f64", data: ["f32", 16] });
    expect(Request.byteLength).toBe(8 + 4 + 4 + 8 + 64);
    const ch = open(uri("struct"), 65536);
    const r = new Request(ch);
    r.request_id = 12345678901234n;
    r.op = 3;
    r.value = -0.25;
    r.data.set([1, 2, 3]);
    ch.send(r);
    const got = ch.receive(Request)!;
    expect(got.request_id).toBe(12345678901234n);
    expect(got.op).toBe(3);
    expect(got.value).toBe(-0.25);
    expect([...got.data.subarray(0, 4)]).toEqual([1, 2, 3, 0]);
    // the same name with another layout is another type
    const Other = defineMessage("Request", { request_id: "u32" });
    expect(Other.typeId).not.toBe(Request.typeId);
  });

  test("a struct received as a vector type is a MessageTypeError naming both", () => {
    const Ping = defineMessage("Ping", { n: "u32" });
    const ch = open(uri("struct-type"), 65536);
    ch.send(new Ping(ch));
    expect(() => ch.receive(FloatVector)).toThrow(/is a Ping, not a FloatVector/);
  });

  test("a sent message cannot be sent again, and a released struct cannot be read", () => {
    const Point = defineMessage("Point", { x: "f64", y: "f64" });
    const ch = open(uri("state"), 65536);
    const v = new FloatVector(ch, 1);
    ch.send(v);
    expect(() => ch.send(v)).toThrow(/already sent/);
    const p = new Point(ch);
    p.x = 1;
    ch.send(p);
    expect(() => p.x).toThrow(/already sent/);
    ch.receive(FloatVector);
    const q = ch.receive(Point)!;
    expect(q.x).toBe(1);
    q.release();
    expect(() => q.x).toThrow(/released/);
  });
});

describe("full and too large", () => {
  test("allocating in a full channel throws ChannelFullError with capacity, used and asked", () => {
    const ch = open(uri("full"), 4096);
    const a = new ByteVector(ch, 4000);
    ch.send(a);
    try {
      new ByteVector(ch, 100);
      throw new Error("no error");
    } catch (err) {
      expect(err).toBeInstanceOf(ChannelFullError);
      const full = err as ChannelFullError;
      expect(full.capacity).toBe(4096);
      expect(full.used).toBe(4016);
      expect(full.asked).toBe(100);
      expect(full.message).toMatch(/capacity 4096, used 4016, asked 100/);
    }
    expect(ch.tryAlloc(ByteVector, 100)).toBeNull();
    expect(ch.stats().fullEvents).toBe(1); // one episode of being full, however many attempts
    ch.receive()!.release();
    ch.send(ch.tryAlloc(ByteVector, 100)!);
    expect(() => new ByteVector(ch, 4000)).toThrow(ChannelFullError);
    expect(ch.stats().fullEvents).toBe(2);
  });

  test("a message that can never fit throws MessageTooLargeError with the sizes", () => {
    const ch = open(uri("large"), 4096);
    expect(() => new ByteVector(ch, 4081)).toThrow(MessageTooLargeError);
    expect(() => new ByteVector(ch, 4081)).toThrow(/4081 bytes can never fit .* largest message 4080 bytes/);
    expect(() => ch.send("x".repeat(5000))).toThrow(MessageTooLargeError);
    const max = new ByteVector(ch, 4080); // exactly the capacity: fits
    ch.send(max);
    expect(ch.receive(ByteVector)!.length).toBe(4080);
  });

  test("a vector of 2^32 bytes or more is MessageTooLargeError, and the channel still works after", () => {
    const ch = open(uri("huge"), 4096);
    expect(() => new FloatVector(ch, 2 ** 30 + 4)).toThrow(MessageTooLargeError);
    expect(() => ch.tryAlloc(DoubleVector, 2 ** 29 + 1)).toThrow(MessageTooLargeError);
    expect(() => ch.sendBatch(2, 2 ** 32 + 8, () => {})).toThrow(MessageTooLargeError);
    ch.send("still fine");
    expect(ch.receive()!.text()).toBe("still fine");
  });

  test("unsent messages are published in allocation order once sent, and discard() skips one", () => {
    const ch = open(uri("order"), 65536);
    const a = new Int32Vector(ch, 1);
    const b = new Int32Vector(ch, 1);
    const c = new Int32Vector(ch, 1);
    a[0] = 1;
    b[0] = 2;
    c[0] = 3;
    ch.send(c);
    expect(ch.receive()).toBeNull(); // a is not sent yet: nothing after it is visible
    ch.send(a);
    b.discard();
    expect(ch.receive(Int32Vector)![0]).toBe(1);
    expect(ch.receive(Int32Vector)![0]).toBe(3);
    expect(ch.receive()).toBeNull();
  });
});

describe("received-message lifetime", () => {
  test("the next receive() releases the previous message and ends its validity", () => {
    const ch = open(uri("life"), 4096); // holds two 2016-byte records, not three
    const send = (value: number) => {
      const v = new Int32Vector(ch, 500);
      v.fill(value);
      ch.send(v);
    };
    send(1);
    send(2);
    const first = ch.receive(Int32Vector)!;
    expect(first[0]).toBe(1);
    expect(ch.tryAlloc(Int32Vector, 500)).toBeNull(); // first is still held
    const second = ch.receive(Int32Vector)!;
    expect(second[499]).toBe(2);
    expect(() => first.copy()).toThrow(/released/);
    send(3); // the space of the first is free again
    second.release();
    expect(ch.receive(Int32Vector)![0]).toBe(3);
  });

  test("a consumer loop that never calls release() does not leak channel space", () => {
    const ch = open(uri("loop"), 4096);
    for (let i = 0; i < 1000; i++) {
      const v = new Int32Vector(ch, 400);
      v[0] = i;
      ch.send(v);
      const got = ch.receive(Int32Vector)!;
      expect(got[0]).toBe(i);
    }
    expect(ch.stats().messagesReceived).toBe(999); // the last one is still held
  });

  test("copy() is a detached message that keeps its value after release", () => {
    const ch = open(uri("copy2"), 4096);
    const v = new FloatVector(ch, 2);
    v.set([4, 5]);
    ch.send(v);
    const got = ch.receive(FloatVector)!;
    const kept = got.copy();
    got.release();
    const w = new FloatVector(ch, 2);
    w.set([7, 7]);
    ch.send(w); // may reuse the released space
    expect([...kept]).toEqual([4, 5]);
    expect(kept).toBeInstanceOf(FloatVector);
  });

  test("`using` releases a received message at the end of the block", () => {
    const ch = open(uri("using"), 4096);
    ch.send("a");
    {
      using m = ch.receive()!;
      expect(m.text()).toBe("a");
      expect(ch.stats().bytesInUse).toBeGreaterThan(0);
    }
    expect(ch.stats().bytesInUse).toBe(0);
  });

  test("a received message can be forwarded to another channel with its type", () => {
    const a = open(uri("fwd-a"), 4096);
    const b = open(uri("fwd-b"), 4096);
    const v = new DoubleVector(a, 1);
    v[0] = 2.5;
    a.send(v);
    b.send(a.receive()!);
    const got = b.receive(DoubleVector)!;
    expect(got[0]).toBe(2.5);
  });
});

describe("lifecycle and stats", () => {
  test("stats() counts messages and bytes and lists this process with its roles", () => {
    const ch = open(uri("stats"), 65536);
    ch.send(new ByteVector(ch, 10));
    ch.send("abc");
    ch.receive();
    const s = ch.stats();
    expect(s).toMatchObject({ mode: "SPSC", capacity: 65536, messagesSent: 2, bytesSent: 13, messagesReceived: 0 });
    ch.receive();
    ch.receive();
    const t = ch.stats();
    expect(t).toMatchObject({ messagesReceived: 2, bytesReceived: 13, bytesInUse: 0 });
    expect(t.processes).toEqual([
      expect.objectContaining({ pid: process.pid, roles: ["producer", "consumer"], alive: true, self: true }),
    ]);
  });

  test("closing the last handle removes the segment", () => {
    const ch = createChannel(uri("rm"), 4096);
    const file = `/dev/shm/psyne.${ch.name}`;
    expect(statSync(file).size).toBeGreaterThan(0);
    ch.close();
    expect(() => statSync(file)).toThrow();
  });

  test("a channel closed with undelivered messages keeps them for the next attacher", () => {
    const u = uri("keep");
    const producer = createChannel(u, 4096);
    producer.send("still here");
    producer.close();
    const consumer = open(u, { open: "attach" });
    expect(consumer.receive()!.text()).toBe("still here");
  });

  test("a consumer that attaches with role: 'consumer' starts at the oldest unreceived message", () => {
    const u = uri("role-attach");
    const producer = open(u, 4096);
    for (const text of ["one", "two", "three"]) producer.send(text);
    const first = createChannel(u, { role: "consumer" });
    expect(first.receive()!.text()).toBe("one");
    first.close(); // released "one"
    const second = open(u, { role: "consumer" });
    expect(second.receive()!.text()).toBe("two");
    expect(second.receive()!.text()).toBe("three");
  });

  test("a closed channel throws on use, and close() twice is harmless", () => {
    const ch = createChannel(uri("closed"), 4096);
    ch.close();
    ch.close();
    expect(() => ch.send("x")).toThrow(/closed/);
    expect(() => ch.receive()).toThrow(/closed/);
  });

  test("removeChannel() deletes a segment by name", () => {
    const name = uniqueName("remove");
    const ch = createChannel(`ipc://${name}`, 4096);
    ch.send("x");
    ch.close();
    expect(removeChannel(name)).toBe(true);
    expect(removeChannel(name)).toBe(false);
  });
});
