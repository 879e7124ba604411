// Retained reading (what network pumps and bridges use): read ahead without freeing, free up to a
// position once the far side has the messages, and a consumer that dies before freeing leaves them
// to the next. Positions cross the FFI modulo 2^52, so this also holds across the 2^64 position
// wrap (npm run test:wrap starts every channel eight laps before it).
import { afterEach, expect, test } from "bun:test";
import { createChannel, Int32Vector, PsyneError, removeChannel } from "../src/index.ts";
import { POLL_RETAINED, RECV_RETAINED, RELEASE_TO } from "../src/core/channel";
import { uniqueName } from "./helpers";

const names: string[] = [];
afterEach(() => {
  for (const name of names.splice(0)) removeChannel(name);
});

function open(tag: string, mode: "SPSC" | "BROADCAST" | "SPMC" = "SPSC") {
  const name = uniqueName(tag);
  names.push(name);
  const tx = createChannel(`ipc://${name}`, { bufferSize: 4096, mode, role: "producer" });
  const rx = createChannel(`ipc://${name}`, { role: "consumer" });
  return { name, tx, rx };
}

const send = (tx: ReturnType<typeof createChannel>, value: number) => {
  const v = new Int32Vector(tx, 4);
  v.fill(value);
  tx.send(v);
};

test("read ahead without freeing, free up to a position: over many laps of a small ring, every message once and in order", async () => {
  for (const mode of ["SPSC", "BROADCAST"] as const) {
    const { tx, rx } = open("laps", mode);
    let sent = 0;
    let seen = 0;
    const held: number[] = [];
    while (seen < 3000) {
      for (let i = 0; i < 40; i++) {
        const v = tx.tryAlloc(Int32Vector, 4);
        if (v === null) break;
        v.fill(sent++);
        tx.send(v);
      }
      // take up to 30 without freeing any, then free the first 20 of them
      let end20 = -1;
      for (let i = 0; i < 30; i++) {
        const next = rx[POLL_RETAINED]();
        if (next === null) break;
        const m = next.message as unknown as Int32Array;
        held.push(m[0]!);
        expect(m[3]).toBe(m[0]);
        if (i === 19) end20 = next.end;
        seen++;
      }
      if (end20 >= 0) rx[RELEASE_TO](end20);
      else break;
    }
    expect(held).toEqual(Array.from({ length: held.length }, (_, i) => i));
    expect(held.length).toBeGreaterThanOrEqual(3000);
    expect(() => rx[RELEASE_TO](-8)).toThrow(PsyneError);
    tx.close();
    rx.close();
  }
});

test("a consumer that closes without freeing leaves its retained messages to the next consumer", async () => {
  const { name, tx, rx } = open("handover");
  for (let i = 0; i < 10; i++) send(tx, i);
  const got: number[] = [];
  for (let i = 0; i < 6; i++) {
    const next = (await rx[RECV_RETAINED]({ timeout: 1000 }))!;
    got.push((next.message as unknown as Int32Array)[0]!);
    if (i === 2) rx[RELEASE_TO](next.end); // 0, 1, 2 are done
  }
  expect(got).toEqual([0, 1, 2, 3, 4, 5]);
  rx.close();
  const next = createChannel(`ipc://${name}`, { role: "consumer" });
  const again: number[] = [];
  for (let m = next.receive(Int32Vector); m !== null; m = next.receive(Int32Vector)) again.push(m[0]!);
  expect(again).toEqual([3, 4, 5, 6, 7, 8, 9]);
  next.close();
  tx.close();
});

test("retained reading is refused on a work queue (SPMC, MPMC)", () => {
  const { tx, rx } = open("queue", "SPMC");
  send(tx, 1);
  expect(() => rx[POLL_RETAINED]()).toThrow(/retained reading is for a single consumer/);
  tx.close();
  rx.close();
});
