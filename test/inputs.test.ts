// Every public entry point of the channel and message types checks its arguments with own-property
// lookups and throws a typed error that names the argument and shows the value; callbacks that are
// not functions are TypeErrors that say what is expected. Nothing is sent, taken or created first.
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import {
  ByteVector,
  type Channel,
  ChannelMode,
  type ChannelOptions,
  createChannel,
  defineMessage,
  FloatVector,
  type Message,
  PsyneError,
} from "../src/index.ts";
import { ownSegments, uniqueName } from "./helpers";
import { closedAfterEach } from "./helpers/channels.ts";

afterAll(() => expect(ownSegments()).toEqual([]));
const track = closedAfterEach();
function open(tag: string, options: ChannelOptions = { bufferSize: 4096 }): Channel {
  const channel = createChannel(`ipc://${uniqueName(tag)}`, options);
  track(channel);
  return channel;
}

/** The error `f` throws (fails the test if it throws none). */
function thrown(f: () => unknown): Error & { code?: string } {
  try {
    f();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error("no error thrown");
}

/** createChannel() that the afterEach closes and removes, should it succeed. */
function tryOpen(uri: string, sizeOrOptions?: number | ChannelOptions, mode?: ChannelMode): Channel {
  const channel = typeof sizeOrOptions === "object" ? createChannel(uri, sizeOrOptions) : createChannel(uri, sizeOrOptions, mode);
  track(channel);
  return channel;
}

function expectInvalid(f: () => unknown, ...mentions: (string | RegExp)[]): void {
  const error = thrown(f);
  expect(error).toBeInstanceOf(PsyneError);
  expect(error.code).toBe("INVALID_ARGUMENT");
  for (const m of mentions) expect(error.message).toMatch(m);
}

describe("createChannel options", () => {
  for (const [key, value] of [
    ["mode", "toString"],
    ["mode", "__proto__"],
    ["mode", "hasOwnProperty"],
    ["open", "constructor"],
    ["open", "valueOf"],
  ] as const) {
    test(`{ ${key}: "${value}" } (a name Object.prototype has) is rejected, naming the value`, () => {
      const name = uniqueName("opt");
      expectInvalid(() => tryOpen(`ipc://${name}`, { [key]: value } as ChannelOptions), `"${value}"`);
      expect(ownSegments().filter((s) => s.includes(name))).toEqual([]); // nothing was created
    });
  }

  test("a positional mode is checked the same way, and wrong types name the value", () => {
    expectInvalid(() => tryOpen(`ipc://${uniqueName("pos")}`, 4096, "toString" as ChannelMode), '"toString"');
    expectInvalid(() => tryOpen(`ipc://${uniqueName("size")}`, "4096" as unknown as number), "bufferSize", '"4096"');
    expectInvalid(() => tryOpen(`ipc://${uniqueName("perm")}`, { permissions: "0600" as unknown as number }), "permissions", '"0600"');
    expectInvalid(() => tryOpen(`ipc://${uniqueName("role")}`, { role: "reader" as "producer" }), "role", '"reader"');
  });
});

describe("sendBatch", () => {
  for (const [label, count, byteLength, mention] of [
    ["a negative count", -1, 16, /count .*got -1/],
    ["a fractional count", 1.5, 16, /count .*got 1\.5/],
    ["a NaN count", Number.NaN, 16, /count .*got NaN/],
    ["a string count", "2", 16, /count .*got "2"/],
    ["a negative byteLength", 2, -4, /byteLength .*got -4/],
    ["a fractional byteLength", 2, 3.5, /byteLength .*got 3\.5/],
  ] as const) {
    test(`${label} is INVALID_ARGUMENT and sends nothing`, () => {
      const ch = open("batch");
      expectInvalid(() => ch.sendBatch(count as number, byteLength, () => {}), mention);
      expect(ch.stats()).toMatchObject({ messagesSent: 0, bytesInUse: 0 });
    });
  }

  test("a byteLength that does not suit the type is INVALID_ARGUMENT", () => {
    const ch = open("batch-type");
    const Pair = defineMessage("InputsPair", { a: "u32", b: "u32" });
    expectInvalid(() => ch.sendBatch(1, 4, () => {}, Pair), /InputsPair message of 4 bytes/);
    expectInvalid(() => ch.sendBatch(1, 6, () => {}, FloatVector), /multiple of 4/);
    expectInvalid(() => ch.sendBatch(1, 8, () => {}, "FloatVector" as never), /type must be a message type/);
    expect(ch.sendBatch(0, 8, () => {})).toBe(0);
  });
});

describe("callbacks", () => {
  test("drain() without a function is a TypeError that says what it expects and points producers to flush()", () => {
    const u = `ipc://${uniqueName("drain")}`;
    const producer = createChannel(u, { bufferSize: 4096, mode: ChannelMode.SPSC, role: "producer" });
    const other = createChannel(u, { role: "consumer" }); // the channel's consumer is someone else
    track(producer);
    track(other);
    for (const bad of [undefined, null, 42, "handler"]) {
      const error = thrown(() => (producer.drain as (h: unknown) => number)(bad));
      expect(error).toBeInstanceOf(TypeError);
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.message).toMatch(/drain\(handler\): handler must be a function/);
      expect(error.message).toMatch(/flush\(\)/);
    }
  });

  test("drainBytes() and sendBatch() without a function are TypeErrors that say what they expect", () => {
    const ch = open("callbacks");
    const read = thrown(() => (ch.drainBytes as (r: unknown) => number)(undefined));
    expect(read).toBeInstanceOf(TypeError);
    expect(read.message).toMatch(/drainBytes\(read\): read must be a function \(bytes, offset, length, typeId\)/);
    const write = thrown(() => (ch.sendBatch as (c: number, b: number, w: unknown) => number)(1, 8, {}));
    expect(write).toBeInstanceOf(TypeError);
    expect(write.message).toMatch(/sendBatch\(count, byteLength, write\): write must be a function .*got an object/);
    expect(ch.stats().messagesSent).toBe(0);
    expectInvalid(() => ch.drain(() => {}, -1), /max must be an integer >= 0 or Infinity, got -1/);
  });
});

describe("values and types", () => {
  test("sendJson() of a BigInt or a cyclic value is INVALID_ARGUMENT naming the value", () => {
    const ch = open("json");
    expectInvalid(() => ch.sendJson(1n), /sendJson\(value\)/, /1n/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expectInvalid(() => ch.sendJson(cyclic), /sendJson\(value\)/);
    expectInvalid(() => ch.sendJson(() => 1), /function/);
    expect(ch.stats().messagesSent).toBe(0);
  });

  test("send() of a value it cannot send names the value", () => {
    const ch = open("send");
    expectInvalid(() => ch.send(42 as unknown as string), /send\(data\): data must be .*got 42/);
    expectInvalid(() => ch.send(null as unknown as string), /got null/);
  });

  test("receive(), recv(), tryAlloc() and .as() with something that is not a message type name it", async () => {
    const ch = open("types");
    ch.send("t");
    expectInvalid(() => ch.receive("FloatVector" as never), /receive\(type\): type must be a message type/, /got "FloatVector"/);
    expect(ch.receive()!.text()).toBe("t"); // the message was not taken
    await expect(ch.recv({} as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expectInvalid(() => ch.tryAlloc(Float32Array as never, 1), /tryAlloc\(type, length\): type/, /function Float32Array/);
    ch.send("u");
    const m = ch.receive()! as Message;
    expectInvalid(() => m.as("ByteVector" as never), /as\(type\): type/);
    expectInvalid(() => ch.messages(42 as never), /messages\(type\): type/);
  });

  test("the waiting calls check their options and return rejected promises, never throw", async () => {
    const ch = open("wait-options");
    for (const options of [{ timeout: "10" }, { timeout: -1 }, { timeout: Number.NaN }, { signal: {} }, 5]) {
      await expect(ch.recv(undefined, options as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      await expect(ch.sendAsync("x", options as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      const alloc = FloatVector.allocAsync(ch, 1, options as never);
      await expect(alloc).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    }
    const badLength = FloatVector.allocAsync(ch, -1);
    expect(badLength).toBeInstanceOf(Promise);
    await expect(badLength).rejects.toThrow(/FloatVector length must be an integer from 0 to 2\^32-1, got -1/);
    await expect(FloatVector.allocAsync({} as never, 1)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expectInvalid(() => ch.receiveSync(undefined, -1), /timeoutMs .*got -1/);
    expect(() => ch.messages(undefined, { timeout: 5 } as never)).toThrow(/messages\(\) takes \{ signal \} only/);
    expect(ch.stats().messagesSent).toBe(0);
  });
});

describe("defineMessage", () => {
  test("a field typed with a name Object.prototype has is an unknown type, named in the error", () => {
    for (const spec of ["toString", "constructor", "__proto__", ["toString", 2], ["u64", 2], ["f32", 0], ["f32", 1.5], "f128"]) {
      expectInvalid(() => defineMessage("InputsBad", { a: spec } as never), /field a of InputsBad has an unknown type/);
    }
  });

  test("a field named like a member every message has (byteLength, text, release, ...) is reserved", () => {
    for (const field of ["byteLength", "text", "release", "as", "type", "view", "toJSON", "toString"]) {
      expectInvalid(() => defineMessage("InputsReserved", { [field]: "u32" } as never), new RegExp(`field name ${field} of InputsReserved is reserved`));
    }
  });

  test("a name or fields of the wrong kind are named in the error", () => {
    expectInvalid(() => defineMessage("1abc", { a: "u8" }), /name must be an identifier/, /"1abc"/);
    expectInvalid(() => defineMessage("InputsNoFields", null as never), /fields must be an object/, /null/);
    expectInvalid(() => defineMessage("InputsArrayFields", ["u8"] as never), /fields must be an object/);
  });

  test("vector constructors name a bad length or channel", () => {
    const ch = open("ctor");
    expectInvalid(() => new FloatVector(ch, -1), /FloatVector length must be an integer from 0 to 2\^32-1, got -1/);
    expectInvalid(() => new ByteVector(ch, "3" as never), /got "3"/);
    expectInvalid(() => new ByteVector({} as never, 1), /needs a channel from createChannel\(\), got an object/);
  });
});
