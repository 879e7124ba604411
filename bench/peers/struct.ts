// The 64-byte struct of bench/hot.ts and how every contestant fills and checks it: message `seq`
// has seq: u32 and seven f64 fields a..g that are functions of seq, so a torn, stale, duplicated
// or reordered record fails the check.
import { defineMessage } from "../../src/index.ts";

export const Tick = defineMessage("BenchTick64", { seq: "u32", a: "f64", b: "f64", c: "f64", d: "f64", e: "f64", f: "f64", g: "f64" });
export const SIZE = Tick.byteLength; // 64
if (SIZE !== 64) throw new Error(`the bench struct is ${SIZE} bytes, not 64`);

// field values of message seq
export const A = (seq: number) => seq + 0.5;
export const B = (seq: number) => seq * 2;
export const C = (seq: number) => -seq;
export const D = (seq: number) => seq + 0.25;
export const E = (seq: number) => seq * 3;
export const F = (seq: number) => seq - 0.5;
export const G = (seq: number) => seq * 4;

/** Writes message seq at `at` through a DataView (the batch paths). */
export function writeAt(view: DataView, at: number, seq: number): void {
  view.setUint32(at, seq, true);
  view.setFloat64(at + 8, A(seq), true);
  view.setFloat64(at + 16, B(seq), true);
  view.setFloat64(at + 24, C(seq), true);
  view.setFloat64(at + 32, D(seq), true);
  view.setFloat64(at + 40, E(seq), true);
  view.setFloat64(at + 48, F(seq), true);
  view.setFloat64(at + 56, G(seq), true);
}

/** Is message seq at `at`? */
export function checkAt(view: DataView, at: number, seq: number): boolean {
  return (
    view.getUint32(at, true) === seq >>> 0 &&
    view.getFloat64(at + 8, true) === A(seq) &&
    view.getFloat64(at + 16, true) === B(seq) &&
    view.getFloat64(at + 24, true) === C(seq) &&
    view.getFloat64(at + 32, true) === D(seq) &&
    view.getFloat64(at + 40, true) === E(seq) &&
    view.getFloat64(at + 48, true) === F(seq) &&
    view.getFloat64(at + 56, true) === G(seq)
  );
}

interface Fields {
  seq: number;
  a: number;
  b: number;
  c: number;
  d: number;
  e: number;
  f: number;
  g: number;
}

/** Fills a writer or an allocated message with message seq. */
export function fill(m: Fields, seq: number): void {
  m.seq = seq;
  m.a = A(seq);
  m.b = B(seq);
  m.c = C(seq);
  m.d = D(seq);
  m.e = E(seq);
  m.f = F(seq);
  m.g = G(seq);
}

/** Does a reader or a received message hold message seq? */
export function check(m: Fields, seq: number): boolean {
  return m.seq === seq >>> 0 && m.a === A(seq) && m.b === B(seq) && m.c === C(seq) && m.d === D(seq) && m.e === E(seq) && m.f === F(seq) && m.g === G(seq);
}
