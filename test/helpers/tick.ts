// The Tick struct of the writer/reader tests: every field of message (producer, seq) is a function
// of the two, so a torn, stale or foreign record is caught.
import { defineMessage } from "../../src/index.ts";

export const Tick = defineMessage("FlyTick", {
  seq: "u32",
  producer: "u32",
  a: "f64",
  b: "f64",
  big: "u64",
  data: ["i32", 4],
  even: "bool",
});

export const expected = (producer: number, seq: number) => ({
  a: seq * 0.5 + producer,
  b: -seq,
  big: BigInt(seq) * 1000003n + BigInt(producer),
  data: [seq, seq + producer, seq + 2 * producer, seq + 3 * producer],
  even: seq % 2 === 0,
});

interface Fields {
  seq: number;
  producer: number;
  a: number;
  b: number;
  big: bigint;
  even: boolean;
}

/** Does a reader or a received message hold exactly message (producer, seq)? */
export function intact(m: Fields, data: (i: number) => number): boolean {
  const e = expected(m.producer, m.seq);
  return m.a === e.a && m.b === e.b && m.big === e.big && m.even === e.even && e.data.every((x, i) => data(i) === x);
}

/** Fills a claimed writer with message (producer, seq). */
export function writeTick(w: ReturnType<typeof Tick.writer>, producer: number, seq: number): void {
  const e = expected(producer, seq);
  w.seq = seq;
  w.producer = producer;
  w.a = e.a;
  w.b = e.b;
  w.big = e.big;
  for (let i = 0; i < 4; i++) w.data.set(i, e.data[i]!);
  w.even = e.even;
}
