// A pump's own handle on a network channel's local ring (a private memory:// ring that the user's
// Channel handle also has open): the receive pump copies frames in as the ring's producer; the
// send pump reads records as its consumer without freeing them (retained reading, psyne.h) and
// frees them once the far side has acknowledged them.
import { ptr, toArrayBuffer } from "bun:ffi";
import { fromNative, NativeCode } from "../core/errors";
import { cstr, type Handle, lastError, lib } from "../core/ffi";
import { layout } from "../core/layout";

/** psyne.h PSY_OPEN_PRIVATE and PSY_ATTACH: a ring of this process that the user's handle created. */
const ATTACH_PRIVATE = 0x100 | 2;
const SPSC = 0;

/** Positions of retained reading travel modulo 2^52 (psyne.h): compare them with these. */
const POSITION_SPAN = 2 ** 52;
/** Bytes from `from` forward to `to`, modulo 2^52. */
export const bytesAhead = (from: number, to: number): number => (((to - from) % POSITION_SPAN) + POSITION_SPAN) % POSITION_SPAN;
/** Has a reader that released up to `released` passed the record ending at `end`? (A ring spans far less than 2^51.) */
export const passed = (end: number, released: number): boolean => {
  const ahead = bytesAhead(released, end);
  return ahead === 0 || ahead > POSITION_SPAN / 2;
};

export class LocalRing {
  readonly capacity: number;
  #handle: Handle | null;
  #buffer: ArrayBuffer;
  #bytes: Uint8Array;
  #polled: Uint32Array; // index, length, type, span of the record polled last
  #claimed: Uint32Array; // the last claim's index, length, type, span
  #payloadBase = layout.RING_OFFSET + layout.REC_HEADER;
  /** Producer side: where the last record this handle committed ends (modulo 2^52). */
  tail: number;

  /** Opens another handle on private ring `name` (an SPSC ring the user's Channel created). */
  constructor(name: string) {
    const error = new Int32Array(new ArrayBuffer(4));
    const handle = lib.psy_open(cstr(name), 0, SPSC, 0o600, ATTACH_PRIVATE, ptr(error));
    if (!handle) throw fromNative(error[0]!, lastError());
    this.#handle = handle as Handle;
    this.capacity = lib.psy_capacity(handle);
    this.#buffer = toArrayBuffer(lib.psy_base(handle)!, 0, lib.psy_map_size(handle));
    this.#bytes = new Uint8Array(this.#buffer);
    this.#polled = new Uint32Array(toArrayBuffer(lib.psy_polled(handle)!, 0, 16));
    this.#claimed = new Uint32Array(toArrayBuffer(lib.psy_claimed(handle)!, 0, 16));
    this.tail = lib.psy_released_position(handle); // a new ring is empty: its head is its tail
  }

  #open(): Handle {
    if (this.#handle === null) throw new Error("psyne: a pump used its ring after closing it");
    return this.#handle;
  }

  // ---- producer (receive pump) ---------------------------------------------------------------

  /** Copies one message in and publishes it; false when the ring has no room for it now. */
  write(typeId: number, payload: Uint8Array): boolean {
    const handle = this.#open();
    const index = lib.psy_claim(handle, payload.byteLength, typeId);
    if (index === NativeCode.FULL) return false;
    if (index < 0) throw fromNative(index, lastError());
    this.#bytes.set(payload, this.#payloadBase + index);
    const rc = lib.psy_commit(handle, index);
    if (rc < 0) throw fromNative(rc, lastError());
    this.tail = (this.tail + this.#claimed[3]!) % POSITION_SPAN;
    return true;
  }

  /** Bytes a record of `length` payload bytes takes in the ring. */
  span(length: number): number {
    const align = layout.REC_ALIGN;
    return Math.ceil((layout.REC_HEADER + length) / align) * align;
  }

  /** Bytes of the ring not yet released by its consumer. */
  used(): number {
    return lib.psy_used(this.#open());
  }

  // ---- consumer (send pump) ------------------------------------------------------------------

  /** The next record after the last one polled, freeing nothing: true, with its details below; false when none. */
  poll(): boolean {
    const rc = lib.psy_poll_retained(this.#open());
    if (rc === NativeCode.EMPTY) return false;
    if (rc < 0) throw fromNative(rc, lastError());
    return true;
  }

  /** The polled record's payload: a view of ring memory, valid until it is released. */
  payload(): Uint8Array {
    return this.#bytes.subarray(this.#payloadBase + this.#polled[0]!, this.#payloadBase + this.#polled[0]! + this.#polled[1]!);
  }

  get polledType(): number {
    return this.#polled[2]!;
  }

  get polledLength(): number {
    return this.#polled[1]!;
  }

  /** Where the polled record ends (modulo 2^52). */
  polledEnd(): number {
    return lib.psy_polled_end(this.#open());
  }

  /** Frees every record up to `end` (a polledEnd()). */
  releaseTo(end: number): void {
    const rc = lib.psy_release_to(this.#open(), end);
    if (rc < 0) throw fromNative(rc, lastError());
  }

  /** Goes back to the first record not released: poll() returns them all again (a resend). */
  rewind(): void {
    lib.psy_rewind(this.#open());
  }

  /** Where the ring's consumer has released up to (modulo 2^52). */
  releasedPosition(): number {
    return lib.psy_released_position(this.#open());
  }

  close(): void {
    const handle = this.#handle;
    if (handle === null) return;
    this.#handle = null;
    this.#buffer.transfer(0); // no view may outlive the mapping
    lib.psy_close(handle);
  }
}
