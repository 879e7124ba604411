// nats:// channels on a real nats-server: every mode across processes, interoperation with the
// official client in both directions, and bad input (URIs, options, a server that is down, foreign
// type headers, a message the server cannot take).
import { afterAll, afterEach, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import {
  ByteVector,
  ChannelConfigError,
  ChannelFullError,
  type ChannelMode,
  createChannel,
  defineMessage,
  FloatVector,
  InvalidChannelNameError,
  MessageTooLargeError,
  MessageTypeError,
  PsyneError,
} from "../src/index.ts";
import { fixture, finish, reapChildren, report, spawnBun, uniqueName, untilOutput, waitForLine } from "./helpers";
import { type NatsServer, startNats, stopAllNats, Tally } from "./helpers/nats";
import { freePort } from "./helpers/net";

setDefaultTimeout(60_000);

let server: NatsServer;
let nc: NatsConnection; // the official client, used directly
beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
});
afterAll(async () => {
  await nc?.close();
  await stopAllNats();
});
afterEach(reapChildren);

const peer = fixture("nats_peer.ts");
const subject = (tag: string) => `psyne.test.${uniqueName(tag)}`;
const Stamp = defineMessage("Stamp", { producer: "u32", seq: "u32", check: "f64" });

async function runModes(mode: ChannelMode, producers: number, consumers: number, perProducer: number) {
  const uri = `${server.url}/${subject(mode)}`;
  const options = JSON.stringify({ mode });
  const readers = Array.from({ length: consumers }, () => spawnBun(peer, ["consume", uri, options], { stdin: "pipe", timeoutMs: 50_000 }));
  await Promise.all(readers.map((r) => waitForLine(r, "ready"))); // subscribed at the server
  const writers = Array.from({ length: producers }, (_, id) => spawnBun(peer, ["produce", uri, options, id, perProducer], { timeoutMs: 50_000 }));
  const sent = await Promise.all(writers.map(async (w) => report<{ sent: number }>(await finish(w))));
  expect(sent.map((s) => s.sent)).toEqual(Array(producers).fill(perProducer));
  const every: Record<number, number> = Object.fromEntries(Array.from({ length: producers }, (_, id) => [id, perProducer]));
  const fanOut = mode === "BROADCAST" ? consumers : 1;
  const tally = new Tally();
  await untilOutput(readers, () => tally.update(readers).total >= producers * perProducer * fanOut, "every message arrived");
  for (const r of readers) r.stdin!.end();
  const reports = await Promise.all(readers.map(async (r) => report<{ received: number; broken: number }>(await finish(r))));
  tally.update(readers);
  expect(reports.map((r) => r.broken)).toEqual(Array(consumers).fill(0));
  expect(tally.missing(every)).toEqual([]);
  return { tally, reports, readers };
}

describe("every mode over NATS, across processes", () => {
  test("SPSC: one producer process, one consumer process, every message in order", async () => {
    const { tally, readers } = await runModes("SPSC", 1, 1, 3000);
    expect(tally.duplicates()).toBe(0);
    expect(tally.outOfOrder.get(readers[0]!) ?? 0).toBe(0);
  });

  test("MPSC: three producers, one consumer: every message, each producer's in its order", async () => {
    const { tally, readers } = await runModes("MPSC", 3, 1, 1000);
    expect(tally.duplicates()).toBe(0);
    expect(tally.outOfOrder.get(readers[0]!) ?? 0).toBe(0);
  });

  test("BROADCAST: three subscribers each get every message, in order", async () => {
    const { tally, readers } = await runModes("BROADCAST", 1, 3, 1500);
    for (const r of readers) {
      expect(tally.perChild.get(r)).toBe(1500);
      expect(tally.outOfOrder.get(r) ?? 0).toBe(0);
    }
    expect(tally.duplicates()).toBe(2 * 1500); // each message three times: once per subscriber
  });

  test("SPMC: a queue group of three consumers: each message reaches exactly one of them", async () => {
    const { tally, readers } = await runModes("SPMC", 1, 3, 3000);
    expect(tally.duplicates()).toBe(0);
    expect(tally.total).toBe(3000);
    for (const r of readers) expect(tally.perChild.get(r) ?? 0).toBeGreaterThan(0); // the group shares the work
  });

  test("MPMC: two producers, three consumers: each message exactly once", async () => {
    const { tally } = await runModes("MPMC", 2, 3, 1500);
    expect(tally.duplicates()).toBe(0);
    expect(tally.total).toBe(3000);
  });
});

test("close() without flush() still sends the unsent tail, and the process then exits by itself", async () => {
  const uri = `${server.url}/${subject("tail")}`;
  const reader = spawnBun(peer, ["consume", uri, "{}"], { stdin: "pipe" });
  await waitForLine(reader, "ready");
  const writer = spawnBun(peer, ["produce-close", uri, "{}", 0, 20_000]);
  const done = await finish(writer); // no process.exit(): the open connection must not keep it alive after close()
  expect(done.code).toBe(0);
  const tally = new Tally();
  await untilOutput([reader], () => tally.update([reader]).total >= 20_000, "the tail arrived");
  reader.stdin!.end();
  await finish(reader);
  expect(tally.update([reader]).missing({ 0: 20_000 })).toEqual([]);
});

test("credentials pass through to the client: a token the server wants works, a wrong one is CONNECTION_FAILED", async () => {
  const guarded = await startNats({ jetstream: false, extra: ["--auth", "s3cret"] });
  const s = subject("auth");
  const rx = createChannel(`${guarded.url}/${s}`, { role: "consumer", nats: { token: "s3cret" } });
  await rx.ready({ timeout: 10_000 });
  const tx = createChannel(`${guarded.url}/${s}`, { nats: { token: "s3cret" } });
  tx.send("with the token");
  await tx.flush({ timeout: 10_000 });
  expect((await rx.recv(undefined, { timeout: 10_000 }))?.text()).toBe("with the token");
  const wrong = createChannel(`${guarded.url}/${s}`, { nats: { token: "guess" } });
  const error = await wrong.ready({ timeout: 10_000 }).catch((e) => e);
  expect(error.code).toBe("CONNECTION_FAILED");
  expect(error.message).toMatch(/authorization/i);
  wrong.close();
  tx.close();
  rx.close();
  await guarded.kill();
});

describe("interoperation with the official NATS client", () => {
  test("a plain NATS client's messages arrive as ByteVectors whose text() and json() work", async () => {
    const s = subject("from-client");
    const ch = createChannel(`${server.url}/${s}`, { role: "consumer" });
    await ch.ready({ timeout: 10_000 });
    const h = headers();
    h.set("X-Other", "not psyne's");
    nc.publish(s, new Uint8Array([1, 2, 3, 250]));
    nc.publish(s, "hello from nats");
    nc.publish(s, JSON.stringify({ a: 1, b: [true, null] }), { headers: h });
    await nc.flush();
    const bytes = await ch.recv(ByteVector, { timeout: 10_000 });
    expect(bytes?.type).toBe("ByteVector");
    expect(Array.from(bytes!)).toEqual([1, 2, 3, 250]);
    expect((await ch.recv(undefined, { timeout: 10_000 }))?.text()).toBe("hello from nats");
    const json = await ch.recv(ByteVector, { timeout: 10_000 });
    expect(json?.json()).toEqual({ a: 1, b: [true, null] });
    ch.close();
  });

  test("a plain NATS client reads what psyne sends: little-endian payloads, the type in headers", async () => {
    const s = subject("to-client");
    const sub = nc.subscribe(s, { max: 5 });
    await nc.flush();
    const ch = createChannel(`${server.url}/${s}`);
    const v = new FloatVector(ch, 3);
    v.set([1.5, -2, 3.25]);
    ch.send(v);
    const st = new Stamp(ch);
    st.producer = 7;
    st.seq = 9;
    st.check = 0.5;
    ch.send(st);
    ch.send("text from psyne");
    ch.sendJson({ ok: true });
    ch.send(new Uint8Array([9, 8, 7]));
    await ch.flush({ timeout: 10_000 });
    const got = [];
    for await (const m of sub) got.push(m);
    const [f, stamp, text, json, raw] = got;
    const floats = new DataView(f!.data.buffer, f!.data.byteOffset, f!.data.byteLength);
    expect([floats.getFloat32(0, true), floats.getFloat32(4, true), floats.getFloat32(8, true)]).toEqual([1.5, -2, 3.25]);
    expect(f!.headers?.get("Psyne-Type")).toBe("FloatVector");
    expect(stamp!.headers?.get("Psyne-Type")).toBe("Stamp");
    expect(Number(stamp!.headers?.get("Psyne-Type-Id"))).toBe(Stamp.typeId);
    const sv = new DataView(stamp!.data.buffer, stamp!.data.byteOffset, stamp!.data.byteLength);
    expect([sv.getUint32(0, true), sv.getUint32(4, true), sv.getFloat64(8, true)]).toEqual([7, 9, 0.5]);
    expect(text!.string()).toBe("text from psyne");
    expect(text!.headers?.get("Psyne-Type")).toBe("text");
    expect(json!.json()).toEqual({ ok: true });
    expect(Array.from(raw!.data)).toEqual([9, 8, 7]);
    expect(raw!.headers).toBeUndefined(); // bytes travel as any client's would
    ch.close();
  });
});

describe("bad input", () => {
  test("a malformed URI or subject is an InvalidChannelNameError before any connection", () => {
    for (const uri of [
      "nats://127.0.0.1:4222",
      "nats://127.0.0.1:4222/",
      "nats://127.0.0.1:99999/x",
      "nats://127.0.0.1:0/x",
      "nats://bad host:4222/x",
      "nats://127.0.0.1:4222/a..b",
      "nats://127.0.0.1:4222/a.*",
      "nats://127.0.0.1:4222/>",
      "nats://127.0.0.1:4222/a b",
      "nats://127.0.0.1:4222/a/b",
      "nats://127.0.0.1:4222/.a",
      `nats://127.0.0.1:4222/${"x".repeat(256)}`,
    ])
      expect(() => createChannel(uri), uri).toThrow(InvalidChannelNameError);
    // credentials in a URI never reach a message
    expect(() => createChannel("nats://user:hunter2@127.0.0.1:4222/a..b")).toThrow(/nats:\/\/\*\*\*@127\.0\.0\.1:4222\/a\.\.b/);
  });

  test("options that do not fit NATS are typed errors naming the option", () => {
    const uri = `${server.url}/${subject("options")}`;
    expect(() => createChannel(uri, { mode: "SPSC", queue: "q" })).toThrow(ChannelConfigError);
    expect(() => createChannel(uri, { mode: "SPMC", queue: "q", durable: "d" })).toThrow(ChannelConfigError);
    expect(() => createChannel(uri, { listen: true })).toThrow(ChannelConfigError);
    expect(() => createChannel(uri, { tls: {} })).toThrow(/nats: \{ tls/);
    expect(() => createChannel(uri, { durable: "a.b" })).toThrow(/durable/);
    expect(() => createChannel(uri, { ackWait: 0 })).toThrow(/ackWait/);
    expect(() => createChannel(uri, { mode: "FANOUT" as ChannelMode })).toThrow(/unknown channel mode/);
    expect(() => createChannel(uri, { nats: "127.0.0.1" as never })).toThrow(/nats/);
  });

  test("a server that is down at open: ready(), a parked recv() and the next send fail with CONNECTION_FAILED", async () => {
    const ch = createChannel(`nats://127.0.0.1:${freePort()}/${subject("down")}`);
    const parked = ch.recv(undefined, { timeout: 20_000 });
    const error = await ch.ready({ timeout: 20_000 }).catch((e) => e);
    expect(error).toBeInstanceOf(PsyneError);
    expect(error.code).toBe("CONNECTION_FAILED");
    expect(error.message).toContain("waitOnFirstConnect");
    expect(await parked.catch((e) => e.code)).toBe("CONNECTION_FAILED");
    expect(() => ch.send("x")).toThrow(/cannot connect/);
    ch.close();
  });

  test("a full send ring and a message too large for it are typed errors naming the nats:// URI, credentials hidden", () => {
    const ch = createChannel(`nats://user:hunter2@127.0.0.1:${freePort()}/${subject("full")}`, { bufferSize: 4096, nats: { waitOnFirstConnect: true } });
    const named = /nats:\/\/\*\*\*@127\.0\.0\.1:\d+\/psyne\.test\./;
    let full: unknown;
    try {
      for (let i = 0; i < 100; i++) ch.send(new Uint8Array(100)); // never connected: the records stay in the send ring
    } catch (error) {
      full = error;
    }
    expect(full).toBeInstanceOf(ChannelFullError);
    expect((full as Error).message).toMatch(named);
    expect(() => ch.send(new Uint8Array(5000))).toThrow(MessageTooLargeError);
    expect(() => ch.send(new Uint8Array(5000))).toThrow(named);
    ch.close();
  });

  test("asked to wait (nats: { waitOnFirstConnect }), a channel opened before its server connects when the server starts", async () => {
    const port = freePort();
    const s = subject("late");
    const ch = createChannel(`nats://127.0.0.1:${port}/${s}`, { role: "consumer", nats: { waitOnFirstConnect: true, reconnectTimeWait: 100 } });
    const ready = ch.ready({ timeout: 30_000 });
    const late = await startNats({ port });
    await ready;
    const tx = createChannel(`${late.url}/${s}`);
    tx.send("made it");
    await tx.flush({ timeout: 10_000 });
    expect((await ch.recv(undefined, { timeout: 10_000 }))?.text()).toBe("made it");
    tx.close();
    ch.close();
    await late.kill();
  });

  test("foreign type headers: malformed ones are dropped and counted, a foreign struct is a MessageTypeError, never a wrong message", async () => {
    const s = subject("foreign");
    const ch = createChannel(`${server.url}/${s}`, { role: "consumer" });
    await ch.ready({ timeout: 10_000 });
    const send = (id: string, name: string | null, bytes: number) => {
      const h = headers();
      h.set("Psyne-Type-Id", id);
      if (name !== null) h.set("Psyne-Type", name);
      nc.publish(s, new Uint8Array(bytes), { headers: h });
    };
    send("abc", "FloatVector", 8); // not a number
    send(String(FloatVector.typeId), "FloatVector", 7); // 7 bytes cannot be f32s
    send(String(Stamp.typeId), "Stamp", 10); // a Stamp has 16 bytes
    send("200", null, 4); // no psyne type has id 200
    send(String(Stamp.typeId), "Other", 16); // the id names another type here
    send("99999999999", null, 4); // out of range
    send("305419896", "Other", 12); // a struct this process does not define (or defines differently)
    const good = new Uint8Array(16);
    new DataView(good.buffer).setUint32(4, 42, true);
    send(String(Stamp.typeId), "Stamp", 0); // empty
    const h = headers();
    h.set("Psyne-Type-Id", String(Stamp.typeId));
    h.set("Psyne-Type", "Stamp");
    nc.publish(s, good, { headers: h });
    await nc.flush();
    // the foreign struct is delivered under its own id: receive(Stamp) refuses it and leaves it
    const refused = await ch.recv(Stamp, { timeout: 10_000 }).catch((e) => e);
    expect(refused).toBeInstanceOf(MessageTypeError);
    const first = ch.receive();
    expect(first?.type).toBe("type#305419896");
    expect(first?.byteLength).toBe(12);
    const stamp = await ch.recv(Stamp, { timeout: 10_000 });
    expect(stamp?.seq).toBe(42);
    expect(ch.receive()).toBeNull();
    expect(ch.stats().network?.malformed).toBe(7);
    ch.close();
  });

  test("a message larger than the server takes: flush() rejects with MessageTooLargeError, and the channel goes on", async () => {
    const s = subject("large");
    const rx = createChannel(`${server.url}/${s}`, { role: "consumer" });
    await rx.ready({ timeout: 10_000 });
    const tx = createChannel(`${server.url}/${s}`, { bufferSize: 8 << 20 });
    tx.send(new Uint8Array(2 << 20)); // nats-server's max_payload is 1 MiB
    tx.send("after");
    const error = await tx.flush({ timeout: 10_000 }).catch((e) => e);
    expect(error).toBeInstanceOf(MessageTooLargeError);
    expect(error.message).toContain("max");
    expect((await rx.recv(undefined, { timeout: 10_000 }))?.text()).toBe("after");
    expect(tx.stats().network?.tooLarge).toBe(1);
    tx.close();
    rx.close();
  });

  test("durable on a server without JetStream: ready() says JetStream is needed", async () => {
    const plain = await startNats({ jetstream: false });
    const ch = createChannel(`${plain.url}/${subject("nojs")}`, { durable: "d" });
    const error = await ch.ready({ timeout: 20_000 }).catch((e) => e);
    expect(error.code).toBe("JETSTREAM_UNAVAILABLE");
    expect(error.message).toContain("-js");
    ch.close();
    await plain.kill();
  });
});
