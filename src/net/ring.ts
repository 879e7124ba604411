// A transport's local rings (tcp, unix, udp and nats alike). The user's handle on each is an
// ordinary Channel over a private memory:// ring (openLocalRing); the pump has a handle of its own
// on the same ring (RingPort, raw FFI): a consumer with retained reading on a send ring (records
// stay until the far side confirmed them), a producer on a receive ring (it claims a record of the
// message's type and length, copies the bytes in, commits).
import { ptr, toArrayBuffer } from "bun:ffi";
import { type Channel, type ChannelMode, createChannel } from "../core/channel";
import { fromNative, NativeCode, PsyneError } from "../core/errors";
import { cstr, type Handle, lastError, lib } from "../core/ffi";
import { layout } from "../core/layout";
import { randomId, hex } from "./wire";

const PRIVATE = 0x100; // psyne.h PSY_OPEN_PRIVATE
const ATTACH = 2; // psyne.h PSY_ATTACH
// layout constants used per message, read once (each `layout.X` is a table lookup through a Proxy)
export const REC_HEADER = layout.REC_HEADER;
const REC_ALIGN = layout.REC_ALIGN;
const RING_OFFSET = layout.RING_OFFSET;
const REC_LENGTH = layout.REC_LENGTH;
const OFF_TAIL = layout.OFF_TAIL;

/** Bytes a record of `length` payload bytes occupies in a ring. */
export const recordSpan = (length: number): number => (REC_HEADER + length + REC_ALIGN - 1) & ~(REC_ALIGN - 1);

// ---- positions --------------------------------------------------------------------------------
// Retained reading's positions cross the FFI as their low 52 bits (psyne.h), so they wrap: compare
// them only through these. A ring spans far less than 2^51 bytes.

const POSITION_SPAN = 2 ** 52;
/** `position` moved on by `bytes`, modulo 2^52. */
export const positionAdd = (position: number, bytes: number): number => (position + bytes) % POSITION_SPAN;
/** Bytes from `from` forward to `to`, modulo 2^52. */
export const bytesAhead = (from: number, to: number): number => {
  const d = to - from;
  return d < 0 ? d + POSITION_SPAN : d;
};
/** Is `position` at or past `target` (within half the position space)? */
export const positionReached = (position: number, target: number): boolean => bytesAhead(target, position) < POSITION_SPAN / 2;

// ---- copying ----------------------------------------------------------------------------------

// Native memcpy over two ranges without making subarrays (which cost about 35 ns each): about 12 ns
// for a small message, against 30 ns for a byte loop at 64 B
const nativeCopy = Buffer.prototype.copy as (this: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number;

/** Copies `length` bytes of `src` at `from` into `dst` at `to`. */
export function copyBytes(src: Uint8Array, from: number, length: number, dst: Uint8Array, to: number): void {
  if (length <= 16) {
    for (let i = 0; i < length; i++) dst[to + i] = src[from + i]!;
  } else {
    nativeCopy.call(src, dst, to, from, from + length);
  }
}

// ---- the user's handle ------------------------------------------------------------------------

/**
 * A new private ring for the transport of `uri`. Its errors (full, too large, wrong type) name
 * `uri`, the channel the user opened, not the ring's internal name (memory://<tag>.<random>).
 */
export function openLocalRing(uri: string, tag: string, bufferSize: number | undefined, mode: ChannelMode, role: "producer" | "consumer"): Channel {
  const name = `${tag.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 150)}.${hex(randomId()).slice(0, 12)}`;
  const ring = createChannel(`memory://${name}`, { bufferSize, mode, role, open: "create" });
  Object.defineProperty(ring, "uri", { value: uri });
  return ring;
}

// ---- the pump's handle ------------------------------------------------------------------------

export class RingPort {
  readonly capacity: number;
  readonly bytes: Uint8Array; // the whole mapping (the ring is mapped twice in a row: a record is never split)
  readonly payloadBase: number; // mapping offset of ring index 0's payload
  /** Producer: where the last record this handle committed ends (a position's low 52 bits). */
  committedEnd: number;
  readonly #uri: string;
  #handle: Handle | null;
  #buffer: ArrayBuffer;
  #view: DataView;
  #polledBuffer: ArrayBuffer;
  #polled: Uint32Array; // psy_polled_record: index, length, type, span
  #claimedBuffer: ArrayBuffer;
  #claimed: Uint32Array; // psy_claimed(): the last claim's first index, length, type, span per record
  #claimedCount = 0;

  /** A second handle on the private ring of `channel` (from openLocalRing), taking `role` at once. */
  constructor(channel: Channel, role: "producer" | "consumer") {
    this.#uri = channel.uri;
    const error = new Int32Array(new ArrayBuffer(4));
    const handle = lib.psy_open(cstr(channel.name), 0, -1, 0o600, ATTACH | PRIVATE, ptr(error));
    if (!handle) throw fromNative(error[0]!, lastError());
    const rc = lib.psy_take_role(handle, role === "producer" ? layout.ROLE_PRODUCER : layout.ROLE_CONSUMER);
    if (rc < 0) {
      const err = fromNative(rc, lastError());
      lib.psy_close(handle);
      throw err;
    }
    this.#handle = handle as Handle;
    this.capacity = lib.psy_capacity(handle);
    this.#buffer = toArrayBuffer(lib.psy_base(handle)!, 0, lib.psy_map_size(handle));
    this.bytes = new Uint8Array(this.#buffer);
    this.#view = new DataView(this.#buffer);
    this.#polledBuffer = toArrayBuffer(lib.psy_polled(handle)!, 0, 16);
    this.#polled = new Uint32Array(this.#polledBuffer);
    this.#claimedBuffer = toArrayBuffer(lib.psy_claimed(handle)!, 0, 16);
    this.#claimed = new Uint32Array(this.#claimedBuffer);
    this.payloadBase = RING_OFFSET + REC_HEADER;
    this.committedEnd = lib.psy_released_position(handle); // a new ring is empty: its head is its tail
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  #open(): Handle {
    if (this.#handle === null) throw new PsyneError("CHANNEL_CLOSED", `${this.#uri}: the transport used its local ring after closing it`);
    return this.#handle;
  }

  /** Bytes of the ring not yet released by its consumer. */
  used(): number {
    return lib.psy_used(this.#open());
  }

  // ---- consumer: retained reading --------------------------------------------------------------

  /** The next record's mapping offset of its payload (nothing is freed), or -1 when there is none. */
  next(): number {
    const index = lib.psy_poll_retained(this.#open());
    if (index >= 0) return this.payloadBase + index;
    if (index === NativeCode.EMPTY) return -1;
    throw fromNative(index, lastError());
  }
  get length(): number {
    return this.#polled[1]!;
  }
  get type(): number {
    return this.#polled[2]!;
  }
  /** Bytes the record next() returned occupies in the ring. */
  get span(): number {
    return this.#polled[3]!;
  }
  /** The record next() returned, as a view of ring memory: valid until it is released. */
  payload(): Uint8Array {
    const at = this.payloadBase + this.#polled[0]!;
    return this.bytes.subarray(at, at + this.#polled[1]!);
  }
  /** Where the record next() returned ends (a position's low 52 bits). */
  end(): number {
    return lib.psy_polled_end(this.#open());
  }
  /** Frees every record before `position`. */
  releaseTo(position: number): void {
    const rc = lib.psy_release_to(this.#open(), position);
    if (rc < 0) throw fromNative(rc, lastError());
  }
  /** Reads again from the first record not freed (a resend). */
  rewind(): void {
    lib.psy_rewind(this.#open());
  }
  /** Where this ring's consumer has released up to (BROADCAST: this subscriber). */
  released(): number {
    return lib.psy_released_position(this.#open());
  }
  /**
   * Where the ring's consumer has taken up to (a single consumer): past what it released, the
   * message it holds now (a consumer that closes is done with it).
   */
  taken(): number {
    const released = this.released();
    const owner = this.#view.getUint32(layout.OFF_CONSUMER_OWNER, true);
    if (owner === 0 || owner > layout.MAX_SLOTS) return released;
    const taken = this.#low52(layout.OFF_SLOTS + (owner - 1) * layout.SLOT_SIZE + layout.SLOT_TAKEN_POS);
    return bytesAhead(released, taken) <= this.capacity ? taken : released;
  }

  #low52(offset: number): number {
    return (this.#view.getUint32(offset + 4, true) & 0xfffff) * 2 ** 32 + this.#view.getUint32(offset, true);
  }

  /** The ring's published tail (a position's low 52 bits): the end of everything committed. */
  tail(): number {
    return this.#low52(OFF_TAIL);
  }
  /** The payload length of the record at `position` (committed, or skipped), read from its header. */
  lengthAt(position: number): number {
    return this.#view.getUint32(RING_OFFSET + (position % this.capacity) + REC_LENGTH, true);
  }

  // ---- producer ------------------------------------------------------------------------------

  /** Claims a record; its payload's mapping offset, or -1 when the ring is full now. */
  claim(length: number, type: number): number {
    const index = lib.psy_claim(this.#open(), length, type);
    if (index >= 0) {
      this.#claimedCount = 1;
      return this.payloadBase + index;
    }
    if (index === NativeCode.FULL) return -1;
    throw fromNative(index, lastError());
  }
  /**
   * Claims up to `count` records of `length` bytes back to back: how many it got (0 when full).
   * The first one's payload is at claimedAt, each next one claimedSpan bytes further; commit(claimedAt)
   * publishes them all.
   */
  claimBatch(count: number, length: number, type: number): number {
    const got = lib.psy_claim_batch(this.#open(), count, length, type);
    if (got >= 0) {
      this.#claimedCount = got;
      return got;
    }
    if (got === NativeCode.FULL) return 0;
    throw fromNative(got, lastError());
  }
  get claimedAt(): number {
    return this.payloadBase + this.#claimed[0]!;
  }
  get claimedSpan(): number {
    return this.#claimed[3]!;
  }

  /** Publishes what the last claim took (its payload at `payloadOffset`). */
  commit(payloadOffset: number): void {
    const rc = lib.psy_commit(this.#open(), payloadOffset - this.payloadBase);
    if (rc < 0) throw fromNative(rc, lastError());
    this.committedEnd = positionAdd(this.committedEnd, this.#claimedCount * this.#claimed[3]!);
  }

  /** Claims, copies `length` bytes of `source` at `from` in, commits: false when the ring has no room now. */
  write(type: number, source: Uint8Array, from: number, length: number): boolean {
    const at = this.claim(length, type);
    if (at < 0) return false;
    copyBytes(source, from, length, this.bytes, at);
    this.commit(at);
    return true;
  }

  close(): void {
    const handle = this.#handle;
    if (handle === null) return;
    this.#handle = null;
    // detach the views first: a view over unmapped memory would crash the process
    this.#buffer.transfer(0);
    this.#polledBuffer.transfer(0);
    this.#claimedBuffer.transfer(0);
    lib.psy_close(handle);
  }
}
