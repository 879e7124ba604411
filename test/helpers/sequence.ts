// A seeded message sequence both sides of a test can regenerate: message i has a size drawn from
// a PRNG and bytes taken from a fixed random tape at an offset derived from i, so the consumer
// checks size, order and every byte without the producer telling it anything.

/** mulberry32: small, fast, good enough for test data. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SequenceOptions {
  seed: number;
  /** Largest message in bytes. */
  maxSize: number;
  /** Fraction of messages drawn from 1..maxSize; the rest are 1..256 bytes. */
  largeFraction?: number;
}

export class MessageSequence {
  readonly tape: Buffer;
  #random: () => number;
  #options: Required<SequenceOptions>;
  #index = 0;

  constructor(options: SequenceOptions) {
    this.#options = { largeFraction: 0.1, ...options };
    const fill = prng(options.seed ^ 0x5eed);
    this.tape = Buffer.alloc(options.maxSize + 65536);
    for (let i = 0; i < this.tape.length; i++) this.tape[i] = (fill() * 256) | 0;
    this.#random = prng(options.seed);
  }

  /** The next message's expected bytes (a view of the tape). */
  next(): Buffer {
    const { maxSize, largeFraction } = this.#options;
    const large = this.#random() < largeFraction;
    const size = 1 + Math.floor(this.#random() * (large ? maxSize : Math.min(256, maxSize)));
    const start = (this.#index++ * 7919) % 65536;
    return this.tape.subarray(start, start + size);
  }
}
