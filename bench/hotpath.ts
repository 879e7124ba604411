// Where a psyne message's time goes, in one process (no cross-core traffic): the public API per
// message against the bare C calls it makes and the per-message view it builds. A diagnostic
// beside bench/throughput.ts; it reaches into src/ffi.ts for the bare calls.
//
//   bun bench/hotpath.ts
import { ptr, toArrayBuffer } from "bun:ffi";
import { bench, do_not_optimize, run } from "mitata";
import { ByteVector, createChannel, removeChannel } from "../src/index.ts";
import { cstr, lib } from "../src/ffi.ts";
import { layout } from "../src/layout.ts";
import { Pattern } from "./peers/pattern.ts";

const SIZE = 64;
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

await run();

tx.close();
rx.close();
map.transfer(0); // detach before unmapping
lib.psy_close(rawTx);
lib.psy_close(rawRx);
for (const n of [name, `${name}-raw`]) removeChannel(n); // in case the close left them
