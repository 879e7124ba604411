// setTimeout for any delay: Bun (like Node) runs a delay of 2^31 ms or more after 1 ms. A private
// stand-in until the channel layer offers one.
const MAX_DELAY_MS = 2 ** 31 - 1;

/** Calls `fn` after `ms` milliseconds (Infinity: never); returns a function that cancels it. */
export function setLongTimeout(fn: () => void, ms: number): () => void {
  if (ms === Number.POSITIVE_INFINITY) return () => {};
  const deadline = performance.now() + ms;
  let timer: ReturnType<typeof setTimeout>;
  const arm = () => {
    const left = deadline - performance.now();
    timer = left > MAX_DELAY_MS ? setTimeout(arm, MAX_DELAY_MS) : setTimeout(fn, Math.max(0, left));
  };
  arm();
  return () => clearTimeout(timer);
}

/** True when `ms` can be given to setTimeout as is. */
export const fitsSetTimeout = (ms: number): boolean => ms <= MAX_DELAY_MS;
