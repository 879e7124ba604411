// tcp:// and unix:// channels: URIs, modes and roles, adopting the listener's configuration,
// ready() and flush(), message types across processes, socket files, stats().
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { statSync } from "node:fs";
import {
  ByteVector,
  ChannelConfigError,
  ChannelExistsError,
  ChannelMode,
  ChannelRoleError,
  createChannel,
  defineMessage,
  InvalidChannelNameError,
  MessageTooLargeError,
  MessageTypeError,
} from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, stdoutLine } from "./helpers";
import { freePort, socketLeft, socketPath, spawnPeer } from "./helpers/net";

setDefaultTimeout(60_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const listen = (options: Record<string, unknown> = {}) => {
  const channel = createChannel("tcp://127.0.0.1:0", { listen: true, bufferSize: 65536, ...options });
  return { channel, uri: `tcp://${channel.stats().listening}` };
};

describe("URIs, modes and roles", () => {
  test("SPMC and MPMC are refused with ChannelConfigError pointing to nats://", () => {
    for (const mode of [ChannelMode.SPMC, ChannelMode.MPMC]) {
      expect(() => createChannel("tcp://127.0.0.1:0", { listen: true, mode })).toThrow(ChannelConfigError);
      expect(() => createChannel("unix:///tmp/x.sock", { mode })).toThrow(/nats:\/\//);
    }
  });

  test("malformed addresses are InvalidChannelNameError before any socket exists", () => {
    for (const uri of ["tcp://nohost", "tcp://127.0.0.1:99999", "tcp://127.0.0.1:0", "tcp://a b:80", "unix://", "udp://x"])
      expect(() => createChannel(uri, { mode: "SPSC" })).toThrow(InvalidChannelNameError);
    expect(() => createChannel(`unix:///tmp/${"x".repeat(120)}`, { listen: true })).toThrow(/107/);
  });

  test("a second SPSC connector is refused: ChannelRoleError with the listener's reason, from ready() and from send", async () => {
    const { channel: listener, uri } = listen({ mode: "SPSC" });
    const first = createChannel(uri, { mode: "SPSC", bufferSize: 65536 });
    await first.ready({ timeout: 5000 });
    const second = createChannel(uri, { mode: "SPSC", bufferSize: 65536 });
    const error = await second.ready({ timeout: 5000 }).catch((e) => e);
    expect(error).toBeInstanceOf(ChannelRoleError);
    expect(error.message).toContain("already has its connector");
    expect(() => second.send("x")).toThrow(ChannelRoleError);
    expect(listener.stats().refused).toBe(1);
    first.send("still here");
    expect((await listener.recv(undefined, { timeout: 5000 }))?.text()).toBe("still here");
    for (const c of [second, first, listener]) c.close();
  });

  test("a connector asking for another mode gets ChannelConfigError naming both", async () => {
    const { channel: listener, uri } = listen({ mode: "BROADCAST" });
    const connector = createChannel(uri, { mode: "MPSC" });
    const error = await connector.ready({ timeout: 5000 }).catch((e) => e);
    expect(error).toBeInstanceOf(ChannelConfigError);
    expect(error.message).toContain("BROADCAST");
    expect(error.message).toContain("MPSC");
    connector.close();
    listener.close();
  });

  test("a connector that leaves out mode and size adopts the listener's after ready(); before it, sending says to await ready()", async () => {
    const { channel: listener, uri } = listen({ mode: "MPSC", bufferSize: 32768 });
    const connector = createChannel(uri);
    expect(() => connector.send("too early")).toThrow(/await channel.ready\(\)/);
    await connector.ready({ timeout: 5000 });
    expect(connector.mode).toBe(ChannelMode.MPSC);
    expect(connector.bufferSize).toBe(32768);
    connector.send("adopted");
    expect((await listener.recv(undefined, { timeout: 5000 }))?.text()).toBe("adopted");
    expect(() => listener.send("x")).toThrow(ChannelRoleError); // an MPSC listener receives
    expect(() => connector.receive()).toThrow(ChannelRoleError); // its connectors send
    connector.close();
    listener.close();
  });

  test("a message larger than the peer's ring is MessageTooLargeError at send once the handshake told its size", async () => {
    const { channel: listener, uri } = listen({ mode: "SPSC", bufferSize: 16384 });
    const connector = createChannel(uri, { mode: "SPSC", bufferSize: 65536 });
    await connector.ready({ timeout: 5000 });
    expect(() => connector.send(new Uint8Array(20_000))).toThrow(MessageTooLargeError);
    connector.send(new Uint8Array(16384 - 16)); // the largest the listener's ring holds
    expect((await listener.recv(undefined, { timeout: 5000 }))?.byteLength).toBe(16384 - 16);
    connector.close();
    listener.close();
  });

  test("a BROADCAST connector cannot send; a listener cannot take a role its mode does not give it", async () => {
    const { channel: listener, uri } = listen({ mode: "BROADCAST" });
    expect(() => createChannel("tcp://127.0.0.1:0", { listen: true, mode: "MPSC", role: "producer" })).toThrow(ChannelRoleError);
    const subscriber = createChannel(uri, { mode: "BROADCAST", bufferSize: 65536 });
    expect(() => subscriber.send("x")).toThrow(ChannelRoleError);
    subscriber.close();
    listener.close();
  });

  test("BROADCAST: what is published while no subscriber is connected is dropped; a subscriber gets what follows its ready()", async () => {
    const { channel: publisher, uri } = listen({ mode: "BROADCAST" });
    for (let i = 0; i < 3; i++) publisher.send(`nobody hears ${i}`);
    await publisher.flush({ timeout: 1000 }); // no subscriber: nothing to wait for
    const subscriber = createChannel(uri);
    await subscriber.ready({ timeout: 5000 });
    publisher.send("after ready");
    expect((await subscriber.recv(undefined, { timeout: 5000 }))?.text()).toBe("after ready");
    subscriber.receive(); // releases it
    await publisher.flush({ timeout: 5000 });
    subscriber.close();
    publisher.close();
  });

  test("a second listener on the same port is ChannelExistsError", () => {
    const { channel: listener, uri } = listen();
    expect(() => createChannel(uri, { listen: true })).toThrow(ChannelExistsError);
    listener.close();
  });
});

describe("ready() and flush()", () => {
  test("ready() waits for the listener to appear, and times out with TIMEOUT when it does not", async () => {
    const port = freePort();
    const connector = createChannel(`tcp://127.0.0.1:${port}`, { mode: "SPSC", bufferSize: 65536 });
    await expect(connector.ready({ timeout: 150 })).rejects.toMatchObject({ code: "TIMEOUT" });
    const listener = createChannel(`tcp://127.0.0.1:${port}`, { listen: true, mode: "SPSC", bufferSize: 65536 });
    await connector.ready({ timeout: 5000 });
    await listener.ready({ timeout: 5000 });
    connector.close();
    listener.close();
  });

  test("flush() in a producer process resolves only once the consumer released every message, and rejects with TIMEOUT before", async () => {
    const { channel: consumer, uri } = listen({ mode: "SPSC" });
    const producer = spawnBun(fixture("net_flush.ts"), [uri, 10]);
    expect(JSON.parse(await stdoutLine(producer, 0))).toEqual({ flushing: true });
    let flushed = false;
    const done = stdoutLine(producer, 1).then((line) => ((flushed = true), JSON.parse(line)));
    for (let i = 0; i < 10; i++) {
      const message = await consumer.recv(undefined, { timeout: 5000 });
      expect(message?.text()).toBe(`message ${i}`);
      await Bun.sleep(20); // held, not released: nothing acknowledged yet
      expect(flushed).toBe(false);
      message!.release();
    }
    expect(await done).toMatchObject({ flushed: expect.any(Number) });
    expect((await finish(producer)).code).toBe(0);

    const stuck = spawnBun(fixture("net_flush.ts"), [uri, 3, 200]); // nobody releases these
    await stdoutLine(stuck, 0);
    expect(JSON.parse(await stdoutLine(stuck, 1))).toMatchObject({ error: "TIMEOUT" });
    consumer.close();
  });
});

describe("message types", () => {
  test("a struct whose definition differs in the other process is MessageTypeError, and stays in the channel", async () => {
    const { channel: consumer, uri } = listen({ mode: "SPSC" });
    const Point = defineMessage("Point", { x: "f64", y: "f64" });
    const producer = spawnBun(fixture("net_struct.ts"), [uri, "f32"]);
    expect(await consumer.recv(Point, { timeout: 5000 }).catch((e) => e)).toBeInstanceOf(MessageTypeError);
    expect(() => consumer.receive(Point)).toThrow(MessageTypeError);
    const raw = consumer.receive() as InstanceType<typeof ByteVector> | null; // the same record, as bytes (this process has no type of that id): two f32
    expect(raw?.byteLength).toBe(8);
    expect(new Float32Array(raw!.buffer, raw!.byteOffset, 2)).toEqual(new Float32Array([1.5, -2.5]));
    raw!.release();
    expect((await consumer.recv(undefined, { timeout: 5000 }))?.text()).toBe("after");
    consumer.receive(); // releases it: the producer's flush() resolves
    expect(report<{ sent: number }>(await finish(producer)).sent).toBe(2);
    consumer.close();
  });

  test("the same definition in both processes reads the fields", async () => {
    const { channel: consumer, uri } = listen({ mode: "SPSC" });
    const Point = defineMessage("Point", { x: "f32", y: "f32" });
    const producer = spawnBun(fixture("net_struct.ts"), [uri, "f32"]);
    const point = (await consumer.recv(Point, { timeout: 5000 }))!;
    expect([point.x, point.y]).toEqual([1.5, -2.5]);
    point.release();
    (await consumer.recv(undefined, { timeout: 5000 }))!.release();
    expect((await finish(producer)).code).toBe(0);
    consumer.close();
  });
});

describe("unix:// sockets", () => {
  test("the socket file is created 0600 (or with permissions) and removed on close", () => {
    const path = socketPath("perm");
    const a = createChannel(`unix://${path}`, { listen: true });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    a.close();
    expect(socketLeft(path)).toBe(false);
    const b = createChannel(`unix://${path}`, { listen: true, permissions: 0o660 });
    expect(statSync(path).mode & 0o777).toBe(0o660);
    b.close();
    expect(socketLeft(path)).toBe(false);
  });

  test("a stale socket file of a killed listener is replaced; a live listener's path is ChannelExistsError", async () => {
    const path = socketPath("stale");
    const dead = spawnPeer({ uri: `unix://${path}`, role: "consume", count: 1, seed: 1, maxSize: 10, options: { listen: true } });
    await stdoutLine(dead, 0);
    expect(() => createChannel(`unix://${path}`, { listen: true })).toThrow(ChannelExistsError);
    dead.kill("SIGKILL");
    await dead.exited;
    expect(socketLeft(path)).toBe(true); // what a SIGKILL leaves
    const fresh = createChannel(`unix://${path}`, { listen: true, mode: "SPSC", bufferSize: 65536 });
    const connector = createChannel(`unix://${path}`, { mode: "SPSC", bufferSize: 65536 });
    connector.send("through the new socket");
    expect((await fresh.recv(undefined, { timeout: 5000 }))?.text()).toBe("through the new socket");
    connector.close();
    fresh.close();
    expect(socketLeft(path)).toBe(false);
  });

  test("unix://@name is Linux's abstract namespace: no file at all", async () => {
    const name = `psyne-test-${process.pid}-${Math.random().toString(36).slice(2)}`;
    const listener = createChannel(`unix://@${name}`, { listen: true, mode: "SPSC", bufferSize: 65536 });
    const connector = createChannel(`unix://@${name}`, { mode: "SPSC", bufferSize: 65536 });
    connector.send(new Uint8Array([1, 2, 3]));
    const got = await listener.recv(ByteVector, { timeout: 5000 });
    expect([...got!]).toEqual([1, 2, 3]);
    expect(socketLeft(`@${name}`)).toBe(false);
    connector.close();
    listener.close();
  });
});

describe("stats()", () => {
  test("lists each peer with its address, since when, bytes and messages; the ring's counters", async () => {
    const { channel: listener, uri } = listen({ mode: "SPSC" });
    const connector = createChannel(uri, { mode: "SPSC", bufferSize: 65536 });
    for (let i = 0; i < 5; i++) connector.send("hello");
    for (let i = 0; i < 5; i++) (await listener.recv(undefined, { timeout: 5000 }))!.release();
    await connector.flush({ timeout: 5000 });
    const l = listener.stats();
    const c = connector.stats();
    expect(l.messagesReceived).toBe(5);
    expect(c.messagesSent).toBe(5);
    expect(l.peers).toHaveLength(1);
    expect(l.peers![0]).toMatchObject({ state: "connected", messagesIn: 5, resends: 0 });
    expect(l.peers![0]!.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(l.peers![0]!.connectedSince).toBeInstanceOf(Date);
    expect(c.peers![0]).toMatchObject({ state: "connected", messagesOut: 5, address: uri.slice("tcp://".length) });
    expect(c.peers![0]!.bytesOut).toBeGreaterThan(5 * 5);
    connector.close(); // says goodbye: gone at once, not away
    for (let i = 0; i < 100 && listener.stats().peers![0]!.state === "connected"; i++) await Bun.sleep(5);
    expect(listener.stats().peers![0]!.state).toBe("gone");
    listener.close();
  });
});

describe("peerTimeout", () => {
  test("BROADCAST: a subscriber that vanished holds the producer back until peerTimeout, then stats() reports it gone and sending goes on", async () => {
    const producer = createChannel("tcp://127.0.0.1:0", { listen: true, mode: "BROADCAST", bufferSize: 8192, peerTimeout: 400 });
    const address = producer.stats().listening!;
    const subscriber = spawnPeer({ uri: `tcp://${address}`, role: "consume", count: 1_000_000, seed: 1, maxSize: 10, ready: true, slowMs: 100_000, options: {} });
    expect(await stdoutLine(subscriber, 0)).toBe('{"ready":true}');
    subscriber.kill("SIGKILL");
    await subscriber.exited;
    const started = performance.now();
    let sent = 0;
    while (performance.now() - started < 5000) {
      await producer.sendAsync(new Uint8Array(1000), { timeout: 5000 }); // waits while the ring is full
      if (++sent === 40) break; // five rings' worth
    }
    expect(sent).toBe(40);
    expect(performance.now() - started).toBeGreaterThanOrEqual(300); // it was held back until the peer was given up
    expect(producer.stats().peers![0]!.state).toBe("gone");
    producer.close();
  });
});

