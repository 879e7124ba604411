// Bridges (SPEC.md "Beyond one machine"): move every message from one channel to another of any
// kind, types kept. A bridge is a consumer of its source and a producer of its destination, and it
// frees a message in its source only once the destination accepted it (flush(): taken by a
// consumer, confirmed by the server, stored by JetStream): a bridge killed at any instant loses
// nothing; the messages it had forwarded but not yet freed are forwarded again (at-least-once).
import { type Channel, type ChannelOptions, createChannel, POLL_RETAINED, RECV_RETAINED, RELEASE_TO } from "../core/channel";
import { invalidArgument } from "../core/check";
import { debug } from "../core/debug";
import { PsyneError } from "../core/errors";
import type { Message } from "../core/messages";
import { settledWithin } from "../core/waiting";

export interface BridgeOptions {
  /** Options for opening the source (mode, bufferSize, nats, durable, queue, ...); the bridge takes its consumer role. */
  from?: ChannelOptions | undefined;
  /** Options for opening the destination; the bridge takes its producer role. */
  to?: ChannelOptions | undefined;
  /** Messages forwarded before the destination confirms them as a batch (default 1024). */
  batch?: number | undefined;
}

export interface BridgeStats {
  from: string;
  to: string;
  /** Messages the destination accepted and the source has freed. */
  forwarded: number;
  bytes: number;
  /** Messages forwarded but not yet accepted by the destination (freed in the source once they are). */
  inFlight: number;
  /** Bytes waiting in the source channel (for a network source: in its local receive ring). */
  sourceBacklog: number;
  /** Messages per second over the last second or so. */
  rate: number;
  running: boolean;
  /** Why the bridge stopped, if it stopped by itself. */
  error: string | null;
}

export interface Bridge {
  readonly from: string;
  readonly to: string;
  stats(): BridgeStats;
  /** Stops taking messages, lets the destination accept what was forwarded (then frees it in the source), and closes both channels. */
  close(): Promise<void>;
}

/**
 * Test-only switch (PSYNE_TEST_BRIDGE_EARLY_RELEASE=1): free each message in the source as soon as
 * it is handed to the destination, before the destination accepted it. It exists so that the crash
 * test can show that it catches the loss this ordering causes; never set it otherwise.
 */
const RELEASE_EARLY = process.env.PSYNE_TEST_BRIDGE_EARLY_RELEASE === "1";

/** How long close() waits for the destination to accept the messages in flight. */
const CLOSE_WAIT_MS = 10_000;

/** Moves every message from `fromUri` to `toUri`; returns at once (the bridge runs until close()). */
export function bridge(fromUri: string, toUri: string, options: BridgeOptions = {}): Bridge {
  if (typeof options !== "object" || options === null) throw invalidArgument("bridge(from, to, options): options", "an object { from, to, batch }", options);
  const batch = options.batch ?? 1024;
  if (!Number.isInteger(batch) || batch < 1 || batch > 1 << 20) throw invalidArgument("bridge options.batch", "a whole number from 1 to 2^20", batch);
  const source = createChannel(fromUri, { ...options.from, role: "consumer" });
  let destination: Channel;
  try {
    destination = createChannel(toUri, { ...options.to, role: "producer" });
  } catch (error) {
    source.close();
    throw error;
  }
  return new Forwarder(source, destination, batch);
}

interface Batch {
  end: number; // where its last message ends in the source (retained reading)
  count: number;
  bytes: number;
  accepted: Promise<void>; // the destination's flush() after it
}

class Forwarder implements Bridge {
  readonly from: string;
  readonly to: string;
  #source: Channel;
  #destination: Channel;
  #batch: number;
  #stop = new AbortController();
  #running: Promise<void>;
  #inFlight: Batch[] = [];
  #forwarded = 0;
  #bytes = 0;
  #error: string | null = null;
  #stopped = false;
  #rateMark = { at: performance.now(), forwarded: 0, rate: 0 };

  constructor(source: Channel, destination: Channel, batch: number) {
    this.#source = source;
    this.#destination = destination;
    this.#batch = batch;
    this.from = source.uri;
    this.to = destination.uri;
    // a shared-memory work queue's consumer cannot hold several messages back: one at a time there
    // (a network channel's local receive ring is always a single consumer's)
    const local = source.uri.startsWith("ipc://") || source.uri.startsWith("memory://");
    const retained = !local || (source.mode !== "SPMC" && source.mode !== "MPMC");
    this.#running = (retained ? this.#forwardRetained() : this.#forwardOneByOne()).then(
      () => {},
      (error) => {
        if (this.#stop.signal.aborted && (error === this.#stop.signal.reason || (error as PsyneError).code === "CHANNEL_CLOSED")) return;
        this.#error = error instanceof Error ? error.message : String(error);
        debug(this.from, `bridge to ${this.to} stopped: ${this.#error}`);
      },
    );
    debug(this.from, `bridging to ${this.to}${retained ? "" : " (one message at a time: the source is a work queue)"}`);
  }

  /** SPSC, MPSC, BROADCAST and network sources: read many without freeing, free them once accepted. */
  /** Both ends can carry messages (a destination that cannot be reached stops the bridge with its reason). */
  async #ready(signal: AbortSignal): Promise<void> {
    await Promise.all([this.#source.ready({ signal }), this.#destination.ready({ signal })]);
  }

  async #forwardRetained(): Promise<void> {
    const signal = this.#stop.signal;
    const source = this.#source;
    await this.#ready(signal);
    while (!signal.aborted) {
      let next = source[POLL_RETAINED]();
      if (next === null) {
        if (this.#inFlight.length > 0) {
          await this.#settleOldest();
          continue;
        }
        next = await source[RECV_RETAINED]({ signal });
        if (next === null) continue;
      }
      let end = next.end;
      let count = 0;
      let bytes = 0;
      try {
        for (let message: Message | undefined = next.message; message !== undefined; ) {
          await this.#destination.sendAsync(message, { signal });
          count++;
          bytes += message.byteLength;
          end = next!.end;
          if (RELEASE_EARLY) source[RELEASE_TO](end);
          if (count >= this.#batch) break;
          next = source[POLL_RETAINED]();
          message = next?.message;
        }
      } finally {
        // what reached the destination is freed in the source once accepted, also when stopping now
        if (count > 0) this.#inFlight.push({ end, count, bytes, accepted: this.#destination.flush() });
      }
      if (this.#inFlight.length >= 2) await this.#settleOldest();
    }
  }

  /** Frees the oldest batch in the source once the destination accepted it. */
  async #settleOldest(): Promise<void> {
    const oldest = this.#inFlight[0]!;
    await oldest.accepted;
    this.#inFlight.shift();
    if (!RELEASE_EARLY) this.#source[RELEASE_TO](oldest.end);
    this.#forwarded += oldest.count;
    this.#bytes += oldest.bytes;
  }

  /** SPMC and MPMC ipc:// sources: take one, forward it, release it once the destination accepted it. */
  async #forwardOneByOne(): Promise<void> {
    const signal = this.#stop.signal;
    await this.#ready(signal);
    while (!signal.aborted) {
      const message = await this.#source.recv(undefined, { signal });
      if (message === null) continue;
      await this.#destination.sendAsync(message, { signal });
      const bytes = message.byteLength;
      if (RELEASE_EARLY) message.release();
      await this.#destination.flush();
      message.release();
      this.#forwarded++;
      this.#bytes += bytes;
    }
  }

  stats(): BridgeStats {
    const now = performance.now();
    const mark = this.#rateMark;
    if (now - mark.at >= 1000) {
      mark.rate = Math.round(((this.#forwarded - mark.forwarded) * 1000) / (now - mark.at));
      mark.at = now;
      mark.forwarded = this.#forwarded;
    }
    let sourceBacklog = 0;
    if (!this.#source.closed)
      try {
        sourceBacklog = this.#source.stats().bytesInUse;
      } catch {
        // a source that failed says so in error
      }
    return {
      from: this.from,
      to: this.to,
      forwarded: this.#forwarded,
      bytes: this.#bytes,
      inFlight: this.#inFlight.reduce((n, b) => n + b.count, 0),
      sourceBacklog,
      rate: mark.rate,
      running: !this.#stopped && this.#error === null,
      error: this.#error,
    };
  }

  async close(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stop.abort(new PsyneError("CHANNEL_CLOSED", `bridge ${this.from} -> ${this.to} closed`));
    await this.#running;
    // what was forwarded: freed in the source once the destination accepted it (bounded wait)
    const deadline = performance.now() + CLOSE_WAIT_MS;
    while (this.#inFlight.length > 0 && this.#error === null) {
      if (!(await settledWithin(this.#settleOldest(), deadline - performance.now()))) break; // left in the source: forwarded again by the next bridge
    }
    this.#destination.close();
    this.#source.close();
  }
}
