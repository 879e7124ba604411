// Messages that prove themselves: [producer u32][seq u32][length u32][checksum u32][body], the
// body derived from (producer, seq), so a consumer detects torn, mixed or corrupted messages.

export const STAMP_HEADER = 16;

function fill(body: Uint8Array, producer: number, seq: number): number {
  let x = (Math.imul(producer + 1, 0x9e3779b1) ^ Math.imul(seq + 1, 0x85ebca6b)) >>> 0;
  let hash = 2166136261;
  for (let i = 0; i < body.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    body[i] = x >>> 24;
    hash = Math.imul(hash ^ body[i]!, 16777619);
  }
  return hash >>> 0;
}

/** Body size of message `seq` of `producer`: 0..maxBody, varied. */
export const bodySize = (producer: number, seq: number, maxBody: number): number =>
  ((Math.imul(seq + 7, 2654435761) ^ producer) >>> 0) % (maxBody + 1);

export function writeStamped(target: Uint8Array, producer: number, seq: number): void {
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
  const body = target.subarray(STAMP_HEADER);
  view.setUint32(0, producer, true);
  view.setUint32(4, seq, true);
  view.setUint32(8, body.length, true);
  view.setUint32(12, fill(body, producer, seq), true);
}

/** The (producer, seq) of a stamped message, or null if any byte is wrong. */
export function readStamped(source: Uint8Array): { producer: number; seq: number } | null {
  if (source.byteLength < STAMP_HEADER) return null;
  const view = new DataView(source.buffer, source.byteOffset, source.byteLength);
  const producer = view.getUint32(0, true);
  const seq = view.getUint32(4, true);
  if (view.getUint32(8, true) !== source.byteLength - STAMP_HEADER) return null;
  const expected = new Uint8Array(source.byteLength - STAMP_HEADER);
  if (fill(expected, producer, seq) !== view.getUint32(12, true)) return null;
  const body = source.subarray(STAMP_HEADER);
  for (let i = 0; i < body.length; i++) if (body[i] !== expected[i]) return null;
  return { producer, seq };
}

/** Backs off politely when there is nothing to do: a 2-core machine runs many of these at once. */
export function backoff(spins: number): void {
  if (spins < 64) return;
  Bun.sleepSync(spins < 2000 ? 0 : 1);
}
