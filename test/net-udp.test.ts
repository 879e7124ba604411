// udp:// datagram BROADCAST: a relay in this process drops and swaps datagrams on purpose, and the
// receiver counts exactly those as lost and reordered while delivering the rest in order; messages
// too large for a datagram are refused at send; multicast in a private network namespace.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ChannelRoleError, createChannel, Int32Vector, MessageTooLargeError } from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun } from "./helpers";

setDefaultTimeout(60_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

describe("udp://", () => {
  test("a relay drops every 10th datagram and swaps 40 pairs: lost and reordered are counted exactly, the rest arrive in order", async () => {
    const COUNT = 1000;
    const receiver = createChannel("udp://127.0.0.1:0", { listen: true, bufferSize: 1 << 20 });
    await receiver.ready({ timeout: 5000 });
    const target = Number(receiver.stats().listening!.split(":")[1]);
    let held: Uint8Array | null = null;
    let relayed = 0;
    const relay = await Bun.udpSocket({
      hostname: "127.0.0.1",
      port: 0,
      binaryType: "uint8array",
      socket: {
        data(socket, data) {
          const seq = new DataView(data.buffer, data.byteOffset).getUint32(12, true);
          if (seq % 10 === 0) return; // dropped on purpose
          if (seq % 25 === 3) {
            held = data.slice(); // sent after the next one: it arrives late
            return;
          }
          socket.send(data, target, "127.0.0.1");
          relayed++;
          if (held) {
            socket.send(held, target, "127.0.0.1");
            held = null;
          }
        },
      },
    });
    const sender = spawnBun(fixture("net_udp_sender.ts"), [`udp://127.0.0.1:${relay.port}`, COUNT]);
    // sequence numbers are i + 1: dropped ones end in 0, the held ones are 3 mod 25
    const expected = Array.from({ length: COUNT }, (_, i) => i).filter((i) => (i + 1) % 10 !== 0 && (i + 1) % 25 !== 3);
    const got: number[] = [];
    while (got.length < expected.length) {
      const m = await receiver.recv(Int32Vector, { timeout: 2000 });
      if (!m) break;
      expect(m.length).toBe(1 + (m[0]! % 50));
      expect(m.every((v) => v === m[0])).toBe(true);
      got.push(m[0]!);
    }
    expect((await finish(sender)).code).toBe(0);
    expect(got).toEqual(expected);
    const stats = receiver.stats();
    // the dropped (but the last, 1000: nothing after it shows the gap), and the held ones when their successor arrived
    expect(stats.lost).toBe(99 + 40);
    expect(stats.reordered).toBe(40); // the held ones, arriving late, dropped
    expect(stats.peers![0]!.messagesIn).toBe(expected.length);
    relay.close();
    receiver.close();
  });

  test("garbage datagrams are dropped and counted; a sender cannot receive nor a receiver send; a message larger than a datagram is MessageTooLargeError", async () => {
    const receiver = createChannel("udp://127.0.0.1:0", { listen: true, bufferSize: 1 << 20 });
    await receiver.ready({ timeout: 5000 });
    const address = receiver.stats().listening!;
    const raw = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
    raw.send(new Uint8Array(5), Number(address.split(":")[1]), "127.0.0.1");
    raw.send(crypto.getRandomValues(new Uint8Array(300)), Number(address.split(":")[1]), "127.0.0.1");
    const sender = createChannel(`udp://${address}`, { bufferSize: 1 << 20 });
    await sender.ready({ timeout: 5000 });
    expect(() => sender.send(new Uint8Array(65_488))).toThrow(MessageTooLargeError);
    sender.send(new Uint8Array(65_487).fill(7)); // the largest that fits a datagram
    await sender.flush({ timeout: 5000 });
    const big = await receiver.recv(undefined, { timeout: 5000 });
    expect(big?.byteLength).toBe(65_487);
    expect(receiver.stats().errors).toMatchObject({ malformed: 1, protocol: 1 });
    expect(() => sender.receive()).toThrow(ChannelRoleError);
    expect(() => receiver.send("x")).toThrow(ChannelRoleError);
    expect(() => createChannel(`udp://${address}`, { mode: "SPSC" })).toThrow(/BROADCAST/);
    raw.close();
    sender.close();
    receiver.close();
  });

  test("multicast: a receiver joins 239.255.7.7 on 127.0.0.1 and a sender process feeds the group (in a private network namespace)", async () => {
    const run = spawnBun(fixture("net_multicast.ts"), [], { wrapper: ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"'] });
    const r = await finish(run);
    expect(r.code).toBe(0);
    const result = report<{ received: number; inOrder: boolean; lost: number; reordered: number; senders: number }>(r);
    expect(result.inOrder).toBe(true);
    expect(result.received + result.lost).toBe(500); // best effort: what did not arrive is counted
    expect(result.received).toBeGreaterThan(400);
    expect(result.senders).toBe(1);
  });
});
