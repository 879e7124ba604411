// A block of received messages (channel.receiveBlock()): one C call takes up to 256 messages and
// holds them all; the consumer loops over their offsets with no call and no object per message.
// One MessageBlock per channel handle, reused by every receiveBlock().
import { CHECKED } from "./messages";
import { PsyneError } from "./errors";
import { UNHOLD, type Unholdable } from "./flyweight";

/** Messages one receiveBlock() takes at most (psyne.h PSY_BLOCK_MAX). */
export const BLOCK_MAX = 256;

/** @internal the channel filled the C core's table with `count` messages */
export const FILL = Symbol("psyne.fill");

export class MessageBlock implements Unholdable {
  /** Messages in the block; 0 once it was released (by release(), the next receive, or close()). */
  count = 0;
  /** The channel's mapping: message i is bytes[offset(i) ... offset(i) + length(i)]. In checked mode, a copy of the block, detached at its release. */
  bytes: Uint8Array;
  /** The same memory as a DataView (for struct fields at offset(i) + field offset). */
  view: DataView;
  #table: Uint32Array; // per message: ring index, length, type id, span (the C core's table; checked mode: a copy's)
  #base: number; // offset in `bytes` of ring index 0's payload (0 in checked mode)
  #mapping: Uint8Array;
  #cTable: Uint32Array;
  #payloadBase: number;
  #release: () => void;

  /** @internal made once per handle by the channel */
  constructor(mapping: Uint8Array, view: DataView, cTable: Uint32Array, payloadBase: number, release: () => void) {
    this.bytes = this.#mapping = mapping;
    this.view = view;
    this.#table = this.#cTable = cTable;
    this.#base = this.#payloadBase = payloadBase;
    this.#release = release;
    if (CHECKED) {
      this.#table = new Uint32Array(4 * BLOCK_MAX);
      this.#base = 0;
    }
  }

  /** Where message i's payload starts in `bytes`. */
  offset(i: number): number {
    if (!(i < this.count)) throw this.#outOfRange(i);
    return this.#base + this.#table[4 * i]!;
  }

  /** Message i's payload bytes. */
  length(i: number): number {
    if (!(i < this.count)) throw this.#outOfRange(i);
    return this.#table[4 * i + 1]!;
  }

  /** Message i's type id. */
  typeId(i: number): number {
    if (!(i < this.count)) throw this.#outOfRange(i);
    return this.#table[4 * i + 2]!;
  }

  /** Frees the block's messages now (the next receiveBlock() or receive on the handle does it too). */
  release(): void {
    if (this.count === 0) return;
    this[UNHOLD]();
    this.#release();
  }

  #outOfRange(i: number): PsyneError {
    return this.count === 0
      ? new PsyneError("INVALID_STATE", "this block was released (by release(), the next receive on its handle, or close())")
      : new PsyneError("INVALID_ARGUMENT", `there is no message ${i} in a block of ${this.count}`);
  }

  /** @internal the channel took `count` messages into the C core's table */
  [FILL](count: number): void {
    if (CHECKED && count > 0) {
      // each message copied out into one buffer of the block's own, detached at its release
      const [from, to, base] = [this.#cTable, this.#table, this.#payloadBase];
      let total = 0;
      for (let i = 0; i < count; i++) total += from[4 * i + 1]!;
      const bytes = new Uint8Array(total);
      for (let i = 0, at = 0; i < count; i++) {
        const start = base + from[4 * i]!;
        const length = from[4 * i + 1]!;
        bytes.set(this.#mapping.subarray(start, start + length), at);
        to[4 * i] = at;
        to[4 * i + 1] = length;
        to[4 * i + 2] = from[4 * i + 2]!;
        at += length;
      }
      this.bytes = bytes;
      this.view = new DataView(bytes.buffer);
    }
    this.count = count;
  }

  /** @internal the handle took the block back */
  [UNHOLD](): void {
    if (this.count === 0) return;
    this.count = 0;
    if (CHECKED) (this.bytes.buffer as ArrayBuffer).transfer(0);
  }
}
