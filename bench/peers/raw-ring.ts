// Diagnostic, not a contestant: psyne's C ring driven through the bare FFI calls (psy_claim,
// psy_commit, psy_poll) with the payload written and checked through one long-lived view, so no
// JS object is made per message. The gap to psyne-producer/consumer is the public API's cost.
// Usage: bun raw-ring.ts producer|consumer NAME SIZE COUNT TIMEOUT_MS [BUFFER_BYTES] (the consumer prints a Report)
import { ptr, toArrayBuffer } from "bun:ffi";
import { cstr, lib } from "../../src/core/ffi.ts";
import { layout } from "../../src/core/layout.ts";
import { deadline, Pattern, type Report } from "./pattern.ts";

const [role, name] = process.argv.slice(2, 4) as [string, string];
const [size, count, timeoutMs] = process.argv.slice(4, 7).map(Number) as [number, number, number];
const bufferSize = Number(process.argv[7] ?? 4 << 20);
const pattern = new Pattern(size);
const expired = deadline(timeoutMs, `raw ring ${role}`);
const error = new Int32Array(new ArrayBuffer(4));
const ch = lib.psy_open(cstr(name), bufferSize, 0, 0o600, 0, ptr(error));
if (!ch) throw new Error(`psy_open failed: ${error[0]}`);
if (lib.psy_take_role(ch, role === "producer" ? layout.ROLE_PRODUCER : layout.ROLE_CONSUMER) < 0) throw new Error("role taken");
const map = toArrayBuffer(lib.psy_base(ch)!, 0, lib.psy_map_size(ch));
const bytes = new Uint8Array(map);
const payload = layout.RING_OFFSET + layout.REC_HEADER; // offset of ring index 0's payload

let spins = 0;
if (role === "producer") {
  for (let seq = 0; seq < count; seq++) {
    let index = lib.psy_claim(ch, size, 4);
    while (index < 0) {
      if ((++spins & 0xffff) === 0) expired();
      index = lib.psy_claim(ch, size, 4);
    }
    pattern.write(bytes, payload + index, seq);
    lib.psy_commit(ch, index);
  }
} else {
  let received = 0;
  let errors = 0;
  let t0 = 0;
  while (received < count) {
    const index = lib.psy_poll(ch);
    if (index < 0) {
      if ((++spins & 0xffff) === 0) expired();
      continue;
    }
    if (received === 0) t0 = performance.now();
    if (!pattern.check(bytes, payload + index, received)) errors++;
    received++;
  }
  const report: Report = { messages: received, errors, elapsedMs: performance.now() - t0 };
  console.log(JSON.stringify(report));
}
map.transfer(0); // detach before psy_close unmaps
lib.psy_close(ch);
