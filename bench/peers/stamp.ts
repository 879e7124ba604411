// The 64-byte messages of bench/modes.ts: [seq u32 LE][producer u32 LE][56 bytes of the pattern
// window of seq] (pattern.ts), so a torn, stale or mixed-up message fails the check. Also the
// back-off every modes peer uses: processes outnumber the 2 cores, so a spinning one must yield.
import { Pattern } from "./pattern.ts";

export const MESSAGE_SIZE = 64;
const pattern = new Pattern(MESSAGE_SIZE);
const WINDOWS = pattern.windows.length;

// native memcmp over two ranges, as in pattern.ts
const compare = Buffer.prototype.compare as (this: Uint8Array, t: Uint8Array, ts: number, te: number, ss: number, se: number) => number;

export function writeStamp(m: Uint8Array, producer: number, seq: number): void {
  pattern.write(m, 0, seq); // seq in bytes 0..3, then the window
  m[4] = producer;
  m[5] = producer >>> 8;
  m[6] = producer >>> 16;
  m[7] = producer >>> 24;
}

/** The message's producer, or -1 if it is not a well-formed stamp; its seq is `seqOf(m)`. */
export function producerOf(m: Uint8Array): number {
  if (m.length !== MESSAGE_SIZE) return -1;
  const seq = seqOf(m);
  if (compare.call(m, pattern.windows[seq % WINDOWS]!, 8, MESSAGE_SIZE, 8, MESSAGE_SIZE) !== 0) return -1;
  return (m[4]! | (m[5]! << 8) | (m[6]! << 16) | (m[7]! << 24)) >>> 0;
}

export const seqOf = (m: Uint8Array): number => (m[0]! | (m[1]! << 8) | (m[2]! << 16) | (m[3]! << 24)) >>> 0;

/** Spin SPINS times, then yield the core with every retry (Bun.sleepSync(0) costs about 0.6 us). */
export const SPINS = 64;

/** Wall-clock ms with sub-ms precision, comparable between processes (performance.now() is not). */
export const wallMs = (): number => performance.timeOrigin + performance.now();
