// A transport's own waits (ready(), flush()): promises that settle when a condition becomes true
// (tested now and at each check()), on their timeout, on their signal, or by rejectAll(). The
// transports unref their sockets and timers, so while any wait is pending an interval keeps the
// process alive, as a parked receive does.
import { PsyneError } from "../core/errors";
import { setLongTimeout, type WaitOptions } from "../core/waiting";

interface Waiter {
  done: () => boolean;
  resolve: () => void;
  reject: (error: unknown) => void;
}

let pending = 0;
let keepalive: ReturnType<typeof setInterval> | null = null;
function hold(change: 1 | -1): void {
  pending += change;
  if (pending > 0) keepalive ??= setInterval(() => {}, 1 << 30);
  else if (keepalive !== null) {
    clearInterval(keepalive);
    keepalive = null;
  }
}

export class Waits {
  #list: Waiter[] = [];

  get size(): number {
    return this.#list.length;
  }

  /**
   * Resolves once `done()` is true; rejects with its signal's reason, with a TIMEOUT PsyneError
   * saying `timeoutMessage()` after `options.timeout` ms, or with what rejectAll() gives. The caller
   * checks its own failure and closed state first.
   */
  until(done: () => boolean, options: WaitOptions, timeoutMessage: () => string): Promise<void> {
    const { timeout, signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (done()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let cancelTimer = () => {};
      const onAbort = () => waiter.reject(signal!.reason);
      const settle = (how: () => void) => {
        const at = this.#list.indexOf(waiter);
        if (at < 0) return;
        this.#list.splice(at, 1);
        cancelTimer();
        signal?.removeEventListener("abort", onAbort);
        hold(-1);
        how();
      };
      const waiter: Waiter = {
        done,
        resolve: () => settle(resolve),
        reject: (error) => settle(() => reject(error)),
      };
      if (timeout !== undefined) cancelTimer = setLongTimeout(() => waiter.reject(new PsyneError("TIMEOUT", timeoutMessage())), timeout);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#list.push(waiter);
      hold(1);
    });
  }

  /** Resolves every wait whose condition holds now. */
  check(): void {
    if (this.#list.length === 0) return;
    for (const waiter of [...this.#list]) if (waiter.done()) waiter.resolve();
  }

  rejectAll(error: unknown): void {
    for (const waiter of [...this.#list]) waiter.reject(error);
  }
}
