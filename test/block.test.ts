// receiveBlock(): many messages per call, no object or call per message; what it holds is released
// by the next receive, counted in stats, taken for flush(), and delivered again if its consumer dies.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ByteVector, ChannelMode, createChannel, FloatVector, PsyneError } from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, stdoutLine, uniqueName, waitForLine } from "./helpers";
import { bodySize, STAMP_HEADER, writeStamped } from "./helpers/stamped.ts";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const uri = (tag: string) => `ipc://${uniqueName(tag)}`;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

function sendStamped(ch: ReturnType<typeof createChannel>, producer: number, seq: number, maxBody = 200): void {
  const m = new ByteVector(ch, STAMP_HEADER + bodySize(producer, seq, maxBody));
  writeStamped(m, producer, seq);
  ch.send(m);
}

describe("in one process", () => {
  test("a block holds every message available, up to max, with offsets, lengths and types; the next call releases it", () => {
    const ch = createChannel(uri("basic"), 65536);
    const f = new FloatVector(ch, 3);
    f.set([1, 2, 3]);
    ch.send(f);
    ch.send("hello");
    const dropped = new ByteVector(ch, 40); // abandoned between two sent ones: passed over
    ch.send(new Uint8Array([9, 8, 7]));
    dropped.discard();
    ch.send(new Uint8Array(300).fill(5));
    const block = ch.receiveBlock(3);
    expect(block.count).toBe(3);
    expect(range(3).map((i) => block.length(i))).toEqual([12, 5, 3]);
    expect(range(3).map((i) => block.typeId(i))).toEqual([FloatVector.typeId, 5, ByteVector.typeId]);
    expect(block.view.getFloat32(block.offset(0) + 8, true)).toBe(3);
    expect(new TextDecoder().decode(block.bytes.subarray(block.offset(1), block.offset(1) + 5))).toBe("hello");
    expect(Array.from(block.bytes.subarray(block.offset(2), block.offset(2) + 3))).toEqual([9, 8, 7]);
    expect(() => block.offset(3)).toThrow(/no message 3 in a block of 3/);
    const before = ch.stats().messagesReceived;
    const next = ch.receiveBlock(); // releases the first three
    expect(next).toBe(block); // one block object per handle
    expect(ch.stats().messagesReceived).toBe(before + 3);
    expect([next.count, next.length(0)]).toEqual([1, 300]);
    next.release();
    expect(next.count).toBe(0);
    expect(() => next.offset(0)).toThrow(PsyneError);
    expect(ch.stats().bytesInUse).toBe(0);
    expect(ch.receiveBlock().count).toBe(0);
    ch.close();
  });

  test("receive(), a reader or drain() after a block release it; a block after receive() releases that message", () => {
    const ch = createChannel(uri("mixed"), 65536);
    for (let i = 0; i < 6; i++) ch.send(new Uint8Array([i]));
    const block = ch.receiveBlock(2);
    expect(block.count).toBe(2);
    const m = ch.receive()!;
    expect(block.count).toBe(0); // released by receive()
    expect(m.bytes()[0]).toBe(2);
    const again = ch.receiveBlock(2);
    expect(() => m.bytes()).toThrow(/released/);
    expect([again.bytes[again.offset(0)], again.bytes[again.offset(1)]]).toEqual([3, 4]);
    expect(ch.drain(() => {})).toBe(1);
    expect(again.count).toBe(0);
    expect(ch.stats().bytesInUse).toBe(0);
    expect(() => ch.receiveBlock(0)).toThrow(/from 1 to 256/);
    expect(() => ch.receiveBlock(257)).toThrow(/from 1 to 256/);
    ch.close();
  });

  test("a producer's flush() resolves once a consumer holds its messages in a block", async () => {
    const u = uri("flush");
    const tx = createChannel(u, { bufferSize: 65536, role: "producer" });
    const rx = createChannel(u, { role: "consumer" });
    for (let i = 0; i < 5; i++) tx.send(new Uint8Array([i]));
    await expect(tx.flush({ timeout: 20 })).rejects.toMatchObject({ code: "TIMEOUT" });
    expect(rx.receiveBlock().count).toBe(5);
    await tx.flush({ timeout: 5000 });
    rx.close();
    tx.close();
  });
});

describe("across processes", () => {
  for (const [mode, producers, consumers] of [
    [ChannelMode.SPSC, 1, 1],
    [ChannelMode.MPMC, 2, 2],
  ] as const) {
    test(`${mode}: consumers taking blocks get every message intact, exactly once`, async () => {
      const u = uri(mode.toLowerCase());
      const N = 20_000;
      const ch = createChannel(u, { mode, bufferSize: 32768, role: "producer" }); // small: it wraps
      const readers = range(consumers).map(() => spawnBun(fixture("block_peer.ts"), ["consume", u, mode], { timeoutMs: 120_000, stdin: "pipe" }));
      await Promise.all(readers.map((r) => waitForLine(r, "ready")));
      for (let seq = 0; seq < N; seq++)
        for (let p = 0; p < producers; p++) {
          const m = await ByteVector.allocAsync(ch, STAMP_HEADER + bodySize(p, seq, 200), { timeout: 30_000 });
          writeStamped(m, p, seq);
          ch.send(m);
        }
      await ch.flush({ timeout: 60_000 });
      for (const r of readers) r.stdin!.end();
      const got = (await Promise.all(readers.map(finish))).map((r) => report<{ received: number; broken: number; blocks: number; seqs: Record<string, number[]> }>(r));
      for (const g of got) expect(g.broken).toBe(0);
      expect(got.reduce((n, g) => n + g.blocks, 0)).toBeGreaterThan(0);
      for (let p = 0; p < producers; p++) expect(got.flatMap((g) => g.seqs[p] ?? []).sort((a, b) => a - b)).toEqual(range(N));
      if (mode === ChannelMode.SPSC) expect(got[0]!.seqs[0]).toEqual(range(N)); // in order
      ch.close();
    }, 150_000);
  }

  for (const mode of [ChannelMode.SPMC, ChannelMode.SPSC]) {
    test(`${mode}: a consumer SIGKILLed holding a block has all of it delivered again`, async () => {
      const u = uri(`kill-${mode.toLowerCase()}`);
      const ch = createChannel(u, { mode, bufferSize: 65536, role: "producer" });
      for (let seq = 0; seq < 10; seq++) sendStamped(ch, 0, seq);
      const victim = spawnBun(fixture("block_peer.ts"), ["hold", u, mode, 6], { timeoutMs: 60_000, stdin: "pipe" });
      const held = JSON.parse(await stdoutLine(victim, 1)) as { received: number; broken: number; seqs: Record<string, number[]> };
      expect(held).toEqual({ received: 6, broken: 0, seqs: { 0: range(6) } });
      victim.kill("SIGKILL");
      await victim.exited;
      const survivor = spawnBun(fixture("block_peer.ts"), ["consume", u, mode], { timeoutMs: 60_000, stdin: "pipe" });
      await waitForLine(survivor, "ready");
      await ch.flush({ timeout: 30_000 }); // all taken by the survivor (the victim's block again)
      survivor.stdin!.end();
      const got = report<{ broken: number; seqs: Record<string, number[]> }>(await finish(survivor));
      expect(got.broken).toBe(0);
      expect([...got.seqs[0]!].sort((a, b) => a - b)).toEqual(range(10));
      ch.close();
    });
  }
});
