// A transport's local rings. The user's handle on each is an ordinary Channel over a private
// memory:// ring; the pump has a handle of its own on the same ring (raw FFI, below): a consumer with
// retained reading on a send ring (records stay until the peer acknowledges them), a producer on a
// receive ring (it claims a record of the frame's type and length, copies the frame in, commits).
import { ptr, toArrayBuffer } from "bun:ffi";
import { type Channel, type ChannelMode, createChannel } from "../core/channel";
import { fromNative, NativeCode } from "../core/errors";
import { cstr, type Handle, lastError, lib } from "../core/ffi";
import { layout } from "../core/layout";
import { randomId, hex } from "./wire";

const PRIVATE = 0x100; // psyne.h PSY_OPEN_PRIVATE
// layout constants used per message, read once (each `layout.X` is a table lookup through a Proxy)
export const REC_HEADER = layout.REC_HEADER;
const REC_ALIGN = layout.REC_ALIGN;
const RING_OFFSET = layout.RING_OFFSET;
const REC_LENGTH = layout.REC_LENGTH;
const OFF_TAIL = layout.OFF_TAIL;
const ATTACH = 2; // psyne.h PSY_ATTACH

/**
 * A new private ring for the transport of `uri`. Its errors (full, too large, wrong type) name
 * `uri`, the channel the user opened, not the ring's internal name (memory://<tag>.<random>).
 */
export function openLocalRing(uri: string, tag: string, bufferSize: number, mode: ChannelMode, role: "producer" | "consumer"): Channel {
  const name = `${tag.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 150)}.${hex(randomId()).slice(0, 12)}`;
  const ring = createChannel(`memory://${name}`, { bufferSize, mode, role, open: "create" });
  Object.defineProperty(ring, "uri", { value: uri });
  return ring;
}

export class RingPort {
  readonly capacity: number;
  readonly bytes: Uint8Array; // the whole mapping (the ring is mapped twice in a row: a record is never split)
  readonly payloadBase: number; // mapping offset of ring index 0's payload
  #handle: Handle | null;
  #buffer: ArrayBuffer;
  #view: DataView;
  #polledBuffer: ArrayBuffer;
  #polled: Uint32Array; // psy_polled_record: index, length, type, span
  #claimedBuffer: ArrayBuffer;
  #claimed: Uint32Array; // psy_claimed(): the last claim's first index, length, type, span per record

  /** A second handle on the private ring of `channel`, taking `role` at once. */
  constructor(channel: Channel, role: "producer" | "consumer") {
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
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  // ---- consumer: retained reading --------------------------------------------------------------

  /** The next record's mapping offset of its payload (nothing is freed), or -1 when there is none. */
  next(): number {
    const index = lib.psy_poll_retained(this.#handle!);
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
  /** Where the record next() returned ends (a position's low 52 bits). */
  end(): number {
    return lib.psy_polled_end(this.#handle!);
  }
  /** Frees every record before `position`. */
  releaseTo(position: number): void {
    const rc = lib.psy_release_to(this.#handle!, position);
    if (rc < 0) throw fromNative(rc, lastError());
  }
  /** Reads again from the first record not freed. */
  rewind(): void {
    lib.psy_rewind(this.#handle!);
  }
  /** Where this ring's consumer has released up to (BROADCAST: this subscriber). */
  released(): number {
    return lib.psy_released_position(this.#handle!);
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
    const ahead = taken - released < 0 ? taken - released + 2 ** 52 : taken - released;
    return ahead <= this.capacity ? taken : released;
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
    const index = lib.psy_claim(this.#handle!, length, type);
    if (index >= 0) return this.payloadBase + index;
    if (index === NativeCode.FULL) return -1;
    throw fromNative(index, lastError());
  }
  /**
   * Claims up to `count` records of `length` bytes back to back: how many it got (0 when full).
   * The first one's payload is at claimedAt, each next one claimedSpan bytes further; commit(claimedAt)
   * publishes them all.
   */
  claimBatch(count: number, length: number, type: number): number {
    const got = lib.psy_claim_batch(this.#handle!, count, length, type);
    if (got >= 0) return got;
    if (got === NativeCode.FULL) return 0;
    throw fromNative(got, lastError());
  }
  get claimedAt(): number {
    return this.payloadBase + this.#claimed[0]!;
  }
  get claimedSpan(): number {
    return this.#claimed[3]!;
  }

  commit(payloadOffset: number): void {
    const rc = lib.psy_commit(this.#handle!, payloadOffset - this.payloadBase);
    if (rc < 0) throw fromNative(rc, lastError());
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

/** Bytes a record of `length` payload bytes occupies in a ring. */
export const recordSpan = (length: number): number =>
  (REC_HEADER + length + REC_ALIGN - 1) & ~(REC_ALIGN - 1);
