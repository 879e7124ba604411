// Where a psyne message's time goes, in one process (no cross-core traffic): the public API per
// message (alloc, send, receive, release) and the batch API (sendBatch/drainBytes, BATCH messages
// per call, no object per message) against the bare C calls they make and the per-message view
// the one-at-a-time path builds. A diagnostic beside bench/throughput.ts; it reaches into
// src/core/ffi.ts for the bare calls. The batch rows time BATCH messages per iteration; the summary
// after the table divides them down to one message.
//
//   bun bench/hotpath.ts
import { ptr, toArrayBuffer } from "bun:ffi";
import { bench, do_not_optimize, run } from "mitata";
import { ByteVector, createChannel, removeChannel } from "../src/index.ts";
import { cstr, lib } from "../src/core/ffi.ts";
import { layout } from "../src/core/layout.ts";
import { Pattern } from "./peers/pattern.ts";

const SIZE = 64;
const BATCH = 256;
const name = `hotpath-${process.pid}`;
const pattern = new Pattern(SIZE);

// public API: a producer handle and a consumer handle on one channel
const tx = createChannel(`ipc://${name}`, { bufferSize: 4 << 20, role: "producer" });
const rx = createChannel(`ipc://${name}`, { role: "consumer" });

// the bare C calls on a second channel, payload through one long-lived view
const error = new Int32Array(new ArrayBuffer(4));
const rawName = cstr(`${name}-raw`);
const rawTx = lib.psy_open(rawName, 4 << 20, 0, 0o600, 0, ptr(error))!;
const rawRx = lib.psy_open(rawName, 0, -1, 0o600, 0, ptr(error))!;
const map = toArrayBuffer(lib.psy_base(rawTx)!, 0, lib.psy_map_size(rawTx));
const bytes = new Uint8Array(map);
const payload = layout.RING_OFFSET + layout.REC_HEADER;

let seq = 0;
bench("public: tryAlloc + send + receive", () => {
  const m = tx.tryAlloc(ByteVector, SIZE)!;
  tx.send(m);
  do_not_optimize(rx.receive(ByteVector));
});
bench("public: the same + pattern write and check", () => {
  const m = tx.tryAlloc(ByteVector, SIZE)!;
  pattern.write(m, 0, seq);
  tx.send(m);
  if (!pattern.check(rx.receive(ByteVector)!, 0, seq++)) throw new Error("bad message");
});
// the batch API: one claim and one publish per BATCH messages, a callback per message
let base = 0;
let sum = 0;
const touch = (bytes: Uint8Array, offset: number, _i: number) => {
  bytes[offset] = 1;
};
const writeOne = (bytes: Uint8Array, offset: number, i: number) => pattern.write(bytes, offset, base + i);
const readOne = (bytes: Uint8Array, offset: number) => {
  sum += bytes[offset]!;
};
const checkOne = (bytes: Uint8Array, offset: number) => {
  if (!pattern.check(bytes, offset, base++)) throw new Error("bad message");
};
bench(`batch of ${BATCH}: sendBatch + drainBytes`, () => {
  if (tx.sendBatch(BATCH, SIZE, touch) !== BATCH) throw new Error("short batch");
  if (rx.drainBytes(readOne) !== BATCH) throw new Error("short drain");
});
bench(`batch of ${BATCH}: the same + pattern write and check`, () => {
  const first = base;
  if (tx.sendBatch(BATCH, SIZE, writeOne) !== BATCH) throw new Error("short batch");
  base = first;
  if (rx.drainBytes(checkOne) !== BATCH) throw new Error("short drain");
});
bench("bare FFI: psy_claim + psy_commit + psy_poll", () => {
  lib.psy_commit(rawTx, lib.psy_claim(rawTx, SIZE, 4));
  do_not_optimize(lib.psy_poll(rawRx));
});
bench("bare FFI + pattern write and check at an offset", () => {
  const index = lib.psy_claim(rawTx, SIZE, 4);
  pattern.write(bytes, payload + index, seq);
  lib.psy_commit(rawTx, index);
  if (!pattern.check(bytes, payload + lib.psy_poll(rawRx), seq++)) throw new Error("bad message");
});
bench("one new Uint8Array(map, offset, 64)", () => {
  do_not_optimize(new Uint8Array(map, payload + (seq++ & 0xffff) * 64, SIZE));
});
bench("pattern write + check, plain buffer", () => {
  pattern.write(bytes, payload, seq);
  if (!pattern.check(bytes, payload, seq++)) throw new Error("bad message");
});

const { benchmarks } = await run();
do_not_optimize(sum);

// per message: the batch rows divided by BATCH, beside the one-at-a-time rows
console.log("\nper message (avg):");
for (const trial of benchmarks as { alias: string; runs: { stats?: { avg: number } }[] }[]) {
  const avg = trial.runs[0]?.stats?.avg;
  if (avg === undefined) continue;
  const per = trial.alias.startsWith("batch of") ? avg / BATCH : avg;
  console.log(`  ${trial.alias.padEnd(50)} ${per.toFixed(1).padStart(7)} ns${trial.alias.startsWith("batch of") ? ` (${avg.toFixed(0)} ns / ${BATCH})` : ""}`);
}

tx.close();
rx.close();
map.transfer(0); // detach before unmapping
lib.psy_close(rawTx);
lib.psy_close(rawRx);
for (const n of [name, `${name}-raw`]) removeChannel(n); // in case the close left them
