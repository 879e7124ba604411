// What every contestant sends and checks, so all of them do the same work per message.
// Message `seq` = its sequence number (u32 little-endian in bytes 0..3) followed by window
// `seq % WINDOWS` of a fixed pseudo-random pool: a torn, stale, duplicated, reordered or
// misaligned message fails the check. The pool is ASCII so Bun IPC can carry it as a string.
// Small messages (up to 256 bytes) in a long-lived buffer of 64 KiB or more (a channel's mapping,
// a socket's read chunk) are written and compared as 32-bit words through a cached Int32Array
// view: about 5 ns at 64 B against about 35 ns for a native compare, whose call costs more than
// the bytes. Anywhere else (a message's own small view) the same bytes go through set/compare.

const WINDOWS = 61; // prime: a record slot reused a lap later almost never expects the same window
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Native memcmp over two ranges without making subarrays (which cost about 35 ns each).
const compare = Buffer.prototype.compare as (
  this: Uint8Array,
  target: Uint8Array,
  targetStart: number,
  targetEnd: number,
  sourceStart: number,
  sourceEnd: number,
) => number;

export class Pattern {
  readonly size: number;
  readonly windows: Uint8Array[]; // expected bytes of a whole message (bytes 0..3 are overwritten by seq)
  readonly tails: Uint8Array[]; // windows[k] without the seq bytes, what producers copy in
  readonly stringTails: string[]; // the same for string messages, which start with 8 hex digits of seq
  readonly words: Int32Array[] | null; // windows[k] as words, for small sizes
  #viewOf: Uint8Array | null = null; // the buffer whose Int32Array view is cached
  #view = new Int32Array(0);

  constructor(size: number) {
    if (size < 8) throw new Error(`message size ${size} is too small: at least 8 bytes`);
    this.size = size;
    const pool = new Uint8Array(size + 8 * WINDOWS);
    let x = 0x9e3779b9;
    for (let i = 0; i < pool.length; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      pool[i] = ALPHABET.charCodeAt(x & 63);
    }
    this.windows = Array.from({ length: WINDOWS }, (_, k) => pool.subarray(8 * k, 8 * k + size));
    this.tails = this.windows.map((w) => w.subarray(4));
    this.stringTails = this.windows.map((w) => Buffer.from(w.subarray(8)).toString("latin1"));
    this.words = size <= 256 && size % 4 === 0 ? this.windows.map((w) => new Int32Array(new Uint8Array(w).buffer)) : null;
  }

  /** A cached word view of `buf` if small messages in it can be handled as words, else null. */
  #words(buf: Uint8Array, off: number): Int32Array | null {
    if (buf === this.#viewOf) return (off & 3) === 0 ? this.#view : null;
    if (this.words === null || buf.length < 65536 || (buf.byteOffset & 3) !== 0 || (off & 3) !== 0) return null;
    this.#viewOf = buf;
    this.#view = new Int32Array(buf.buffer as ArrayBuffer, buf.byteOffset, buf.length >> 2);
    return this.#view;
  }

  /** Writes message `seq` into `buf` at `off` (size bytes). */
  write(buf: Uint8Array, off: number, seq: number): void {
    const view = this.#words(buf, off);
    if (view !== null) {
      const expected = this.words![seq % WINDOWS]!;
      const at = off >> 2;
      view[at] = seq;
      for (let i = 1; i < expected.length; i++) view[at + i] = expected[i]!;
      return;
    }
    buf.set(this.tails[seq % WINDOWS]!, off + 4);
    buf[off] = seq;
    buf[off + 1] = seq >>> 8;
    buf[off + 2] = seq >>> 16;
    buf[off + 3] = seq >>> 24;
  }

  /** True if `buf` at `off` holds exactly message `seq`. */
  check(buf: Uint8Array, off: number, seq: number): boolean {
    const view = this.#words(buf, off);
    if (view !== null) {
      const expected = this.words![seq % WINDOWS]!;
      const at = off >> 2;
      if (view[at] !== (seq | 0)) return false;
      for (let i = 1; i < expected.length; i++) if (view[at + i] !== expected[i]) return false;
      return true;
    }
    const got = (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0;
    return got === seq && compare.call(buf, this.windows[seq % WINDOWS]!, 4, this.size, off + 4, off + this.size) === 0;
  }

  /** Message `seq` as a string (for Bun IPC's JSON serialization). */
  string(seq: number): string {
    return seq.toString(16).padStart(8, "0") + this.stringTails[seq % WINDOWS];
  }

  checkString(msg: unknown, seq: number): boolean {
    return (
      typeof msg === "string" &&
      msg.length === this.size &&
      msg.startsWith(seq.toString(16).padStart(8, "0")) &&
      msg.endsWith(this.stringTails[seq % WINDOWS]!)
    );
  }
}

/** What a consumer prints as its last stdout line; the parent computes rates from it. */
export interface Report {
  messages: number;
  errors: number;
  firstError?: string | undefined;
  elapsedMs: number; // from the first message received to the last
  note?: string | undefined;
}

/** A deadline for busy loops, checked every few thousand iterations (reading the clock costs). */
export function deadline(ms: number, what: string): () => void {
  const end = performance.now() + ms;
  return () => {
    if (performance.now() > end) {
      console.error(`${what}: gave up after ${ms} ms`);
      process.exit(3);
    }
  };
}
