// What every latency pinger shares: the one-way samples (round trip / 2, in ns) and the report it
// prints as its last stdout line. lat-pingpong.c computes the same percentiles in C.

export interface LatencyReport {
  rounds: number;
  errors: number;
  firstError?: string | undefined;
  /** one-way latency in ns */
  p50: number;
  p99: number;
  max: number;
}

export class Samples {
  readonly #ns: Float64Array;
  #count = 0;
  #errors = 0;
  #firstError: string | undefined;

  constructor(readonly rounds: number, readonly warmup: number) {
    this.#ns = new Float64Array(rounds);
  }

  /** Records round `i` (warm-up rounds first, then measured ones) that took `rttNs`. */
  add(i: number, rttNs: number): void {
    if (i >= this.warmup) this.#ns[this.#count++] = rttNs / 2;
  }

  /** Counts a wrong or missing reply. */
  fail(what: string): void {
    this.#errors++;
    this.#firstError ??= what;
  }

  get errors(): number {
    return this.#errors;
  }

  report(): LatencyReport {
    const sorted = this.#ns.slice(0, this.#count).sort();
    const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
    return { rounds: this.#count, errors: this.#errors, firstError: this.#firstError, p50: at(0.5), p99: at(0.99), max: at(1) };
  }
}

/** Exits with code 3 after `ms`: a pinger or ponger that loses its partner does not hang. */
export function giveUpAfter(ms: number, what: string): void {
  setTimeout(() => {
    console.error(`${what}: gave up after ${ms} ms`);
    process.exit(3);
  }, ms).unref();
}
