// Where a psyne message's time goes, in one process (no cross-core traffic): each way of sending
// and receiving 64 bytes (the per-message API with a ByteVector and with a 64-byte struct, the
// struct writer/reader, the batch API with drainBytes and with receiveBlock) against the bare C
// calls they make, and the steps in between (what a message object costs to make, the layout
// Proxy). A diagnostic beside bench/hot.ts; it reaches into src/core/ for the bare calls. The batch
// rows time BATCH messages per iteration; the summary after the table divides them down to one.
//
//   bun bench/hotpath.ts
import { ptr, toArrayBuffer } from "bun:ffi";
import { bench, do_not_optimize, run } from "mitata";
import { ByteVector, createChannel, removeChannel } from "../src/index.ts";
import { cstr, lib } from "../src/core/ffi.ts";
import { layout } from "../src/core/layout.ts";
import { makeMeta, MessageState } from "../src/core/messages.ts";
import { Pattern } from "./peers/pattern.ts";
import { A, B, C, checkAt, D, E, F, G, SIZE, Tick, writeAt } from "./peers/struct.ts";

const BATCH = 256;

// fill and check written out per path (not one shared function): a function that sees instances,
// writers and readers alike would make each field access polymorphic, and time that instead
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
const filler = () =>
  new Function("A", "B", "C", "D", "E", "F", "G", "return (m, s) => { m.seq = s; m.a = A(s); m.b = B(s); m.c = C(s); m.d = D(s); m.e = E(s); m.f = F(s); m.g = G(s); }")(
    A, B, C, D, E, F, G,
  ) as (m: Fields, seq: number) => void;
const checker = () =>
  new Function("A", "B", "C", "D", "E", "F", "G", "return (m, s) => m.seq === s >>> 0 && m.a === A(s) && m.b === B(s) && m.c === C(s) && m.d === D(s) && m.e === E(s) && m.f === F(s) && m.g === G(s)")(
    A, B, C, D, E, F, G,
  ) as (m: Fields, seq: number) => boolean;
const name = `hotpath-${process.pid}`;
const pattern = new Pattern(SIZE);

// public API: a producer handle and a consumer handle on one channel
const tx = createChannel(`ipc://${name}`, { bufferSize: 4 << 20, role: "producer" });
const rx = createChannel(`ipc://${name}`, { role: "consumer" });
const drainAll = () => {
  while (rx.receiveBlock().count > 0);
};

// the bare C calls on a second channel, payload through one long-lived view
const error = new Int32Array(new ArrayBuffer(4));
const rawName = cstr(`${name}-raw`);
const rawTx = lib.psy_open(rawName, 4 << 20, 0, 0o600, 0, ptr(error))!;
const rawRx = lib.psy_open(rawName, 0, -1, 0o600, 0, ptr(error))!;
const map = toArrayBuffer(lib.psy_base(rawTx)!, 0, lib.psy_map_size(rawTx));
const bytes = new Uint8Array(map);
const payload = layout.RING_OFFSET + layout.REC_HEADER;

let seq = 0;
// ---- one message per call --------------------------------------------------------------------
bench("ByteVector: tryAlloc + send + receive", function* () {
  drainAll();
  yield () => {
    tx.send(tx.tryAlloc(ByteVector, SIZE)!);
    do_not_optimize(rx.receive(ByteVector));
  };
});
bench("ByteVector: the same + pattern write and check", function* () {
  drainAll();
  yield () => {
    const m = tx.tryAlloc(ByteVector, SIZE)!;
    pattern.write(m, 0, seq);
    tx.send(m);
    if (!pattern.check(rx.receive(ByteVector)!, 0, seq++)) throw new Error("bad message");
  };
});
bench("struct: new T + 8 fields + send + receive(T) + 8 fields", function* () {
  drainAll();
  const [fill, check] = [filler(), checker()];
  yield () => {
    const m = new Tick(tx);
    fill(m, seq);
    tx.send(m);
    if (!check(rx.receive(Tick)!, seq++)) throw new Error("bad message");
  };
});
const w = Tick.writer(tx);
const r = Tick.reader(rx);
bench("struct: writer claim + 8 fields + send, reader next + 8 fields", function* () {
  drainAll();
  const [fill, check] = [filler(), checker()];
  yield () => {
    w.claim();
    fill(w, seq);
    w.send();
    r.next();
    if (!check(r, seq++)) throw new Error("bad message");
  };
});
bench("struct: writer alone (claim + 8 fields + send)", function* () {
  drainAll();
  const fill = filler();
  let k = 0;
  yield () => {
    w.claim();
    fill(w, seq++);
    w.send();
    if (++k === BATCH) {
      k = 0;
      drainAll();
    }
  };
});
// ---- the batch API: one claim and one publish per BATCH messages -----------------------------
let base = 0;
let view: DataView | null = null;
const writeOne = (b: Uint8Array, offset: number, i: number) => writeAt((view ??= new DataView(b.buffer)), offset, base + i);
const checkOne = (b: Uint8Array, offset: number) => {
  if (!checkAt((view ??= new DataView(b.buffer)), offset, base++)) throw new Error("bad message");
};
bench(`batch of ${BATCH}: sendBatch + drainBytes, 8 fields each way`, function* () {
  drainAll();
  yield () => {
    const first = base;
    if (tx.sendBatch(BATCH, SIZE, writeOne, Tick) !== BATCH) throw new Error("short batch");
    base = first;
    if (rx.drainBytes(checkOne) !== BATCH) throw new Error("short drain");
  };
});
bench(`batch of ${BATCH}: sendBatch + receiveBlock, 8 fields each way`, function* () {
  drainAll();
  yield () => {
    const first = base;
    if (tx.sendBatch(BATCH, SIZE, writeOne, Tick) !== BATCH) throw new Error("short batch");
    const block = rx.receiveBlock();
    const v = block.view;
    for (let i = 0; i < block.count; i++) if (!checkAt(v, block.offset(i), first + i)) throw new Error("bad message");
  };
});
// ---- the C calls under each path --------------------------------------------------------------
bench("bare FFI: psy_claim + psy_commit + psy_poll", () => {
  lib.psy_commit(rawTx, lib.psy_claim(rawTx, SIZE, 4));
  do_not_optimize(lib.psy_poll(rawRx));
});
bench(`bare FFI: psy_claim_batch + psy_commit + psy_poll_block of ${BATCH}`, () => {
  lib.psy_claim_batch(rawTx, BATCH, SIZE, 4);
  lib.psy_commit(rawTx, new Uint32Array(toArrayBuffer(lib.psy_claimed(rawTx)!, 0, 4))[0]!);
  do_not_optimize(lib.psy_poll_block(rawRx, BATCH));
});
// ---- steps -----------------------------------------------------------------------------------
bench("step: a layout constant through the layout Proxy", () => {
  do_not_optimize(layout.REC_HEADER);
});
bench("step: new Uint8Array(map, offset, 64)", () => {
  do_not_optimize(new Uint8Array(map, payload + (seq++ & 0xffff) * 64, SIZE));
});
bench("step: a message's meta object", () => {
  do_not_optimize(makeMeta(null, ByteVector, 4, MessageState.Received, map, payload + (seq++ & 0xffff) * 64, SIZE, 0));
});
bench("step: a received ByteVector (meta + typed array)", () => {
  const at = payload + (seq++ & 0xffff) * 64;
  do_not_optimize(ByteVector.view(makeMeta(null, ByteVector, 4, MessageState.Received, map, at, SIZE, at)));
});
bench("step: pattern write + check, plain buffer", () => {
  pattern.write(bytes, payload, seq);
  if (!pattern.check(bytes, payload, seq++)) throw new Error("bad message");
});

const { benchmarks } = await run();

// per message: the batch rows divided by BATCH, beside the one-at-a-time rows
console.log("\nper message (avg):");
for (const trial of benchmarks as { alias: string; runs: { stats?: { avg: number } }[] }[]) {
  const avg = trial.runs[0]?.stats?.avg;
  if (avg === undefined) continue;
  const batch = /of 256/.test(trial.alias);
  const per = batch ? avg / BATCH : avg;
  console.log(`  ${trial.alias.padEnd(66)} ${per.toFixed(1).padStart(7)} ns${batch ? ` (${avg.toFixed(0)} ns / ${BATCH})` : ""}`);
}

tx.close();
rx.close();
map.transfer(0); // detach before unmapping
lib.psy_close(rawTx);
lib.psy_close(rawRx);
for (const n of [name, `${name}-raw`]) removeChannel(n); // in case the close left them
