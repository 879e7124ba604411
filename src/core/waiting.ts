// Parks asynchronous receives and allocations of one channel handle until the ring may have
// changed. On Linux the event loop itself waits: this thread listens on a doorbell (an abstract
// Unix socket), and whoever satisfies a parked wait writes a byte to it (csrc/events.c): one
// wake-up, as for Bun's own IPC. Elsewhere (or PSYNE_WAKE=thread) a C waiter thread sleeps in the
// kernel (csrc/wait.c) and calls back through a thread-safe JSCallback: two wake-ups, the thread
// then the loop. Neither keeps the process alive by itself, so a ref'd timer is held while anything
// is parked; with doorbells it is also the slow safety re-poll that the waiter thread does in C.
import { FFIType, JSCallback } from "bun:ffi";
import { fromNative, PsyneError } from "./errors";
import { type Handle, lastError, lib } from "./ffi";

/** psyne.h enum psy_wait_kind: a message to receive, room to send, what this handle sent taken. */
export const WaitKind = { Data: 0, Space: 1, Flushed: 2 } as const;
export type WaitKind = (typeof WaitKind)[keyof typeof WaitKind];

export interface WaitOptions {
  /** Milliseconds to wait; no limit when omitted or Infinity. */
  timeout?: number | undefined;
  /** Aborting rejects the wait with the signal's reason (an AbortError by default); an aborted call takes nothing. */
  signal?: AbortSignal | undefined;
}

interface Parked {
  /** Tries once; true when the wait is over (resolved or rejected). */
  attempt(): boolean;
  /** Payload bytes a space wait needs. */
  length: number;
  fail(error: unknown): void;
}

// Only keeps the event loop alive while something is parked; the C side does the re-polling.
const KEEPALIVE_MS = 1 << 30;

// setTimeout takes at most 2^31-1 ms; a longer delay fires after 1 ms (a TimeoutOverflowWarning).
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * setTimeout for any delay: `ms` of Infinity never fires (no timer at all), and a delay of 2^31 ms
 * or more is waited in chunks instead of firing at once. Returns a function that cancels it. The
 * timer keeps the process alive, as setTimeout's does.
 */
export function setLongTimeout(fn: () => void, ms: number): () => void {
  if (typeof ms !== "number" || !(ms >= 0)) throw new PsyneError("INVALID_ARGUMENT", `a timeout must be a number of milliseconds >= 0, got ${String(ms)}`);
  if (ms === Number.POSITIVE_INFINITY) return () => {};
  if (ms <= MAX_TIMER_MS) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  }
  const deadline = performance.now() + ms;
  let timer: ReturnType<typeof setTimeout>;
  const rearm = (): void => {
    const left = deadline - performance.now();
    timer = left > MAX_TIMER_MS ? setTimeout(rearm, MAX_TIMER_MS) : setTimeout(fn, Math.max(0, left));
  };
  rearm();
  return () => clearTimeout(timer);
}

/**
 * Whether `promise` settled within `ms` (false also when it rejected). The timer is cleared either
 * way: a pending one would keep the process alive.
 */
export async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let cancel = (): void => {};
  const timedOut = new Promise<boolean>((resolve) => (cancel = setLongTimeout(() => resolve(false), Math.max(0, ms))));
  try {
    return await Promise.race([promise.then(() => true, () => false), timedOut]);
  } finally {
    cancel();
  }
}

/**
 * Microseconds a wait spins (polling) before it parks in the kernel: a reply that comes within
 * this costs no wake-up. PSYNE_SPIN_US overrides it; 0 parks at once.
 */
export const SPIN_MICROS = Number(process.env.PSYNE_SPIN_US ?? 20);

/** Polls `attempt` for up to SPIN_MICROS; its first non-null result, or null. */
export function spin<T>(attempt: () => T | null): T | null {
  if (!(SPIN_MICROS > 0)) return null;
  const until = performance.now() + SPIN_MICROS / 1000;
  do {
    const value = attempt();
    if (value !== null) return value;
  } while (performance.now() < until);
  return null;
}

/** Doorbells (Linux, unless PSYNE_WAKE=thread); else, or if this thread cannot listen, waiter threads. */
let useBells = process.platform === "linux" && process.env.PSYNE_WAKE !== "thread";

// The safety re-poll of a parked handle with a doorbell: what the waiter thread does in C every
// WAKE_SAFETY_MS (csrc/wait.c), and only wakes JavaScript for when a cursor moved.
const BELL_SAFETY_MS = 50;

/** This thread's doorbell, and the handles with a kind armed on it. */
class Doorbell {
  readonly id: number;
  listener: unknown = null; // kept: the socket this thread's loop watches
  #parked = new Set<Parking>();
  // while anything is parked: keeps the process alive, and is the safety re-poll
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(id: number) {
    this.id = id;
  }

  park(parking: Parking): void {
    this.#parked.add(parking);
    this.#timer ??= setInterval(() => this.rang(1), BELL_SAFETY_MS);
  }

  unpark(parking: Parking): void {
    this.#parked.delete(parking);
    if (this.#parked.size === 0 && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  /** Bytes came (safety 0), or the safety timer fired (1). */
  rang(safety: number): void {
    for (const parking of [...this.#parked]) parking.rung(safety);
  }
}
let doorbell: Doorbell | null = null;

/** This thread's doorbell, made on first use (null if it cannot listen: waiter threads instead). */
function ownDoorbell(): Doorbell | null {
  if (doorbell !== null || !useBells) return doorbell;
  for (let attempt = 0; attempt < 4; attempt++) {
    const id = crypto.getRandomValues(new Uint32Array(1))[0]! >>> 0 || 1;
    try {
      const bell = new Doorbell(id);
      const listener = Bun.listen({
        unix: `\0psyne-bell-${id.toString(16).padStart(8, "0")}`, // abstract: no file, gone with the process
        socket: { open: (socket) => socket.unref(), data: () => bell.rang(0) },
      });
      listener.unref(); // the process lives on while something is parked: Doorbell's timer
      bell.listener = listener;
      doorbell = bell;
      return doorbell;
    } catch {
      // the name is taken (or this thread may not listen): try another, then give up on bells
    }
  }
  useBells = false;
  return null;
}

export class Parking {
  #handle: Handle;
  #callback: JSCallback | null = null;
  #started = [false, false, false];
  #queues: [Parked[], Parked[], Parked[]] = [[], [], []];
  #keepalive: ReturnType<typeof setInterval> | null = null;
  #closed = false;
  #waking = false; // in #wake, which arms again when it is done
  #bell: Doorbell | null = null; // the doorbell this handle's armed kinds ring, if any
  #belled = 0; // kinds armed with the doorbell (bit per kind)

  /**
   * `pumped`: a transport's local ring, which nobody but this thread changes (its pump calls
   * wake() after each change): waits need no waiter thread, whose wake-ups would only cost
   * futex calls and a thread switch per message.
   */
  constructor(
    handle: Handle,
    readonly pumped = false,
  ) {
    this.#handle = handle;
  }

  /** This thread's doorbell rang: look again at each armed kind that was rung or may be ready. */
  rung(safety: number): void {
    for (let kind = 0 as WaitKind; kind < 3; kind++) {
      const bit = 1 << kind;
      if (!(this.#belled & bit) || this.#closed) continue;
      const queue = this.#queues[kind];
      const rc = lib.psy_bell_wake(this.#handle, kind, queue.length ? queue[0]!.length : 0, safety);
      if (rc === 0) continue;
      this.#belled &= ~bit;
      if (!this.#belled) this.#bell?.unpark(this);
      this.#wake(kind);
    }
  }

  /**
   * Resolves with the first non-null result of `attempt`, run whenever the ring may have
   * changed; null on timeout. `attempt` may throw to reject. Call it once yourself first: this
   * only waits.
   */
  wait<T>(kind: WaitKind, length: number, attempt: () => T | null, options: WaitOptions = {}): Promise<T | null> {
    const { timeout, signal } = options;
    if (this.#closed) return Promise.reject(new PsyneError("CHANNEL_CLOSED", "the channel is closed"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (timeout !== undefined && !(timeout >= 0))
      return Promise.reject(new PsyneError("INVALID_ARGUMENT", `timeout must be a number of milliseconds >= 0, got ${String(timeout)}`));
    return new Promise<T | null>((resolve, reject) => {
      let cancelTimer: (() => void) | undefined;
      const onAbort = () => parked.fail(signal!.reason);
      const end = () => {
        const queue = this.#queues[kind];
        const at = queue.indexOf(parked);
        if (at >= 0) queue.splice(at, 1);
        cancelTimer?.();
        signal?.removeEventListener("abort", onAbort);
        this.#settle(kind, at === 0);
      };
      const parked: Parked = {
        length,
        attempt: () => {
          const value = attempt();
          if (value === null) return false;
          end();
          resolve(value);
          return true;
        },
        fail: (error) => {
          end();
          reject(error);
        },
      };
      if (timeout !== undefined && timeout !== Number.POSITIVE_INFINITY)
        cancelTimer = setLongTimeout(() => {
          end();
          resolve(null);
        }, timeout);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queues[kind].push(parked);
      this.#arm(kind);
    });
  }

  /**
   * The ring may have changed: let parked operations try again, oldest first. One that finds
   * nothing stops the round, so a later one never goes before it (waiting sends leave in call
   * order).
   */
  #wake(kind: WaitKind): void {
    if (this.#closed) return;
    const queue = this.#queues[kind];
    this.#waking = true;
    try {
      for (const parked of [...queue]) {
        let settled: boolean;
        try {
          settled = parked.attempt();
        } catch (error) {
          parked.fail(error);
          continue;
        }
        if (!settled) break; // the rest would find the same nothing
      }
    } finally {
      this.#waking = false;
    }
    if (queue.length) this.#arm(kind);
  }

  #arm(kind: WaitKind): void {
    const queue = this.#queues[kind];
    if (!queue.length || this.#closed) return;
    if (this.pumped) {
      this.#keepalive ??= setInterval(() => {}, KEEPALIVE_MS);
      return;
    }
    const bell = (this.#bell ??= ownDoorbell());
    if (bell !== null) {
      const rc = lib.psy_bell_arm(this.#handle, kind, queue[0]!.length, bell.id);
      if (rc < 0) throw fromNative(rc, lastError());
      if (rc === 1) queueMicrotask(() => this.#wake(kind)); // already there: no need to sleep
      else {
        this.#belled |= 1 << kind;
        bell.park(this);
      }
      return;
    }
    if (!this.#started[kind]) {
      this.#callback ??= new JSCallback((k: number) => this.#wake(k as WaitKind), {
        args: [FFIType.i32],
        returns: FFIType.void,
        threadsafe: true,
      });
      const rc = lib.psy_waiter_start(this.#handle, kind, this.#callback.ptr!);
      if (rc < 0) throw fromNative(rc, lastError());
      this.#started[kind] = true;
    }
    const rc = lib.psy_waiter_arm(this.#handle, kind, queue[0]!.length);
    if (rc < 0) throw fromNative(rc, lastError());
    if (rc === 1) queueMicrotask(() => this.#wake(kind)); // already there: no need to sleep
    this.#keepalive ??= setInterval(() => {}, KEEPALIVE_MS);
  }

  /** The ring changed on this thread (a transport's pump): parked operations of `kind` try now. */
  wake(kind: WaitKind): void {
    if (this.#queues[kind].length > 0 && !this.#waking) this.#wake(kind);
  }

  /** Parked operations of a kind (the waiting sends and allocations, for the order of later ones). */
  pending(kind: WaitKind): number {
    return this.#queues[kind].length;
  }

  /**
   * Called when a wait ends: stop waiting in the kernel once nothing of this kind is parked. When
   * the oldest ended without being served (timeout, abort), the next may need less: wait for it.
   */
  #settle(kind: WaitKind, wasOldest: boolean): void {
    if (this.#queues[kind].length === 0 && this.#belled & (1 << kind) && !this.#closed) this.#unbell(kind);
    else if (this.#queues[kind].length === 0 && this.#started[kind] && !this.#closed) lib.psy_waiter_disarm(this.#handle, kind);
    else if (wasOldest && !this.#waking) this.#arm(kind);
    if (this.#queues.every((queue) => queue.length === 0) && this.#keepalive) {
      clearInterval(this.#keepalive);
      this.#keepalive = null;
    }
  }

  /** Rejects everything parked with `error` (a network channel whose connection failed for good). */
  failAll(error: unknown): void {
    for (const p of this.#queues.flat()) p.fail(error);
  }

  #unbell(kind: WaitKind): void {
    lib.psy_bell_disarm(this.#handle, kind);
    this.#belled &= ~(1 << kind);
    if (!this.#belled) this.#bell?.unpark(this);
  }

  /** Rejects everything parked, then stops and joins the waiter threads: no callback after this. */
  close(uri: string): void {
    if (this.#closed) return;
    for (const kind of [WaitKind.Data, WaitKind.Space, WaitKind.Flushed]) if (this.#belled & (1 << kind)) this.#unbell(kind);
    this.#closed = true; // first: a failing wait must not arm the waiter again
    const parked = this.#queues.flat();
    for (const p of parked) p.fail(new PsyneError("CHANNEL_CLOSED", `channel ${uri} was closed while waiting`));
    if (this.#keepalive) clearInterval(this.#keepalive);
    this.#keepalive = null;
    lib.psy_waiter_stop(this.#handle);
    this.#callback?.close();
    this.#callback = null;
  }
}
