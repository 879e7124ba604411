// Zero-allocation access to struct messages, the flyweight of SBE and Agrona: T.writer(channel)
// and T.reader(channel) are one long-lived object each, positioned over one record at a time; their
// fields read and write the record in place through the one DataView of the channel's mapping. No
// object is made per message.
//
// Between messages a flyweight points at OUTSIDE instead of the mapping: an object with DataView's
// method names that all throw INVALID_STATE. So a field used before claim()/next() or after
// send()/release() throws where it is used and never reaches channel memory, and a correct loop pays
// nothing for it (its accessors only ever see the DataView). Array fields are indexed accessors
// (`w.data.set(i, x)`, `r.data.get(i)`) that go through the same position: a typed array cannot be
// moved to another record, and one that escaped would write into records already published.
import type { CheckedWaitOptions } from "./check";
import { checkWaitOptions, describe } from "./check";
import { PsyneError } from "./errors";

/** What a flyweight needs from a channel handle (Channel implements it under these keys). */
export const FLY_CLAIM = Symbol("psyne.flyClaim");
export const FLY_CLAIM_ASYNC = Symbol("psyne.flyClaimAsync");
export const FLY_COMMIT = Symbol("psyne.flyCommit");
export const FLY_ABANDON = Symbol("psyne.flyAbandon");
export const FLY_POLL = Symbol("psyne.flyPoll");
export const FLY_POLL_ASYNC = Symbol("psyne.flyPollAsync");
export const FLY_RELEASE = Symbol("psyne.flyRelease");
export const FLY_VIEW = Symbol("psyne.flyView");
/** The channel calls reader[UNHOLD]() when something else on the handle released its record. */
export const UNHOLD = Symbol("psyne.unhold");

export interface FlyType {
  readonly typeName: string;
  readonly typeId: number;
  readonly byteLength: number;
}

export interface FlyweightChannel {
  readonly uri: string;
  /** Claims a record: its payload offset in the mapping, or -1 when full. */
  [FLY_CLAIM](type: FlyType): number;
  [FLY_CLAIM_ASYNC](type: FlyType, options: CheckedWaitOptions): Promise<number>;
  [FLY_COMMIT](offset: number): void;
  [FLY_ABANDON](offset: number): void;
  /** Takes the next message for `reader` (releasing the one before): its payload offset, or -1 when empty. */
  [FLY_POLL](reader: Unholdable, type: FlyType): number;
  /** FLY_POLL, waiting for a message: -1 on timeout. */
  [FLY_POLL_ASYNC](reader: Unholdable, type: FlyType, options: CheckedWaitOptions): Promise<number>;
  [FLY_RELEASE](reader: Unholdable): void;
  /** The DataView of the whole mapping. */
  [FLY_VIEW](): DataView;
}

export interface Unholdable {
  [UNHOLD](): void;
}

type Scalar = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64" | "f32" | "f64" | "bool";
type Element = Exclude<Scalar, "u64" | "i64" | "bool">;
export type FieldLayout = Readonly<Record<string, { offset: number; spec: Scalar | [Element, number] }>>;

const VIEW = Symbol("psyne.view"); // the mapping's DataView while positioned, else an OUTSIDE object
const AT = Symbol("psyne.at"); // payload offset of the record in the mapping, or -1
const RING = Symbol("psyne.ring"); // the channel handle
const RING_VIEW = Symbol("psyne.ringView");

interface Positioned {
  [VIEW]: DataView;
  [AT]: number;
}

const viewMethods = [
  "getUint8", "getInt8", "getUint16", "getInt16", "getUint32", "getInt32", "getFloat32", "getFloat64", "getBigUint64", "getBigInt64",
  "setUint8", "setInt8", "setUint16", "setInt16", "setUint32", "setInt32", "setFloat32", "setFloat64", "setBigUint64", "setBigInt64",
];

/** Where a flyweight points between messages: every access throws `why`. */
function outside(why: string): DataView {
  const fail = (): never => {
    throw new PsyneError("INVALID_STATE", why);
  };
  return Object.fromEntries(viewMethods.map((m) => [m, fail])) as unknown as DataView;
}

// One function per element type and direction (not one shared through a lookup): each accessor's
// DataView call is then a direct, inlinable call.
function scalarGet(kind: Scalar, off: number): (this: Positioned) => unknown {
  switch (kind) {
    case "u8": return function () { return this[VIEW].getUint8(this[AT] + off); };
    case "i8": return function () { return this[VIEW].getInt8(this[AT] + off); };
    case "bool": return function () { return this[VIEW].getUint8(this[AT] + off) !== 0; };
    case "u16": return function () { return this[VIEW].getUint16(this[AT] + off, true); };
    case "i16": return function () { return this[VIEW].getInt16(this[AT] + off, true); };
    case "u32": return function () { return this[VIEW].getUint32(this[AT] + off, true); };
    case "i32": return function () { return this[VIEW].getInt32(this[AT] + off, true); };
    case "f32": return function () { return this[VIEW].getFloat32(this[AT] + off, true); };
    case "f64": return function () { return this[VIEW].getFloat64(this[AT] + off, true); };
    case "u64": return function () { return this[VIEW].getBigUint64(this[AT] + off, true); };
    case "i64": return function () { return this[VIEW].getBigInt64(this[AT] + off, true); };
  }
}

function scalarSet(kind: Scalar, off: number): (this: Positioned, value: never) => void {
  switch (kind) {
    case "u8": return function (x: number) { this[VIEW].setUint8(this[AT] + off, x); };
    case "i8": return function (x: number) { this[VIEW].setInt8(this[AT] + off, x); };
    case "bool": return function (x: unknown) { this[VIEW].setUint8(this[AT] + off, x ? 1 : 0); };
    case "u16": return function (x: number) { this[VIEW].setUint16(this[AT] + off, x, true); };
    case "i16": return function (x: number) { this[VIEW].setInt16(this[AT] + off, x, true); };
    case "u32": return function (x: number) { this[VIEW].setUint32(this[AT] + off, x, true); };
    case "i32": return function (x: number) { this[VIEW].setInt32(this[AT] + off, x, true); };
    case "f32": return function (x: number) { this[VIEW].setFloat32(this[AT] + off, x, true); };
    case "f64": return function (x: number) { this[VIEW].setFloat64(this[AT] + off, x, true); };
    case "u64": return function (x: bigint | number) { this[VIEW].setBigUint64(this[AT] + off, BigInt(x), true); };
    case "i64": return function (x: bigint | number) { this[VIEW].setBigInt64(this[AT] + off, BigInt(x), true); };
  }
}

/**
 * An array field of a writer or reader: `get(i)`, `set(i, x)` (writers), `length`, `copyFrom(values)`
 * (writers) and `toArray()`, all on the record the flyweight is positioned on now.
 */
export interface FieldArray<T = number> {
  readonly length: number;
  get(index: number): T;
  toArray(): T[];
}
export interface WritableFieldArray<T = number> extends FieldArray<T> {
  set(index: number, value: T): void;
  /** Writes values[0..] to elements 0.. (at most length of them). */
  copyFrom(values: ArrayLike<T>): void;
}

// Element i of an array field at `off`: one function per element type, as for scalars.
function elementGet(kind: Element, o: Positioned, off: number, check: (i: number) => void): (i: number) => number {
  switch (kind) {
    case "u8": return (i) => (check(i), o[VIEW].getUint8(o[AT] + off + i));
    case "i8": return (i) => (check(i), o[VIEW].getInt8(o[AT] + off + i));
    case "u16": return (i) => (check(i), o[VIEW].getUint16(o[AT] + off + 2 * i, true));
    case "i16": return (i) => (check(i), o[VIEW].getInt16(o[AT] + off + 2 * i, true));
    case "u32": return (i) => (check(i), o[VIEW].getUint32(o[AT] + off + 4 * i, true));
    case "i32": return (i) => (check(i), o[VIEW].getInt32(o[AT] + off + 4 * i, true));
    case "f32": return (i) => (check(i), o[VIEW].getFloat32(o[AT] + off + 4 * i, true));
    case "f64": return (i) => (check(i), o[VIEW].getFloat64(o[AT] + off + 8 * i, true));
  }
}

function elementSet(kind: Element, o: Positioned, off: number, check: (i: number) => void): (i: number, x: number) => void {
  switch (kind) {
    case "u8": return (i, x) => (check(i), o[VIEW].setUint8(o[AT] + off + i, x));
    case "i8": return (i, x) => (check(i), o[VIEW].setInt8(o[AT] + off + i, x));
    case "u16": return (i, x) => (check(i), o[VIEW].setUint16(o[AT] + off + 2 * i, x, true));
    case "i16": return (i, x) => (check(i), o[VIEW].setInt16(o[AT] + off + 2 * i, x, true));
    case "u32": return (i, x) => (check(i), o[VIEW].setUint32(o[AT] + off + 4 * i, x, true));
    case "i32": return (i, x) => (check(i), o[VIEW].setInt32(o[AT] + off + 4 * i, x, true));
    case "f32": return (i, x) => (check(i), o[VIEW].setFloat32(o[AT] + off + 4 * i, x, true));
    case "f64": return (i, x) => (check(i), o[VIEW].setFloat64(o[AT] + off + 8 * i, x, true));
  }
}

function arrayField(owner: Positioned, element: Element, count: number, offset: number, field: string, writable: boolean): WritableFieldArray {
  // the bounds check keeps an index from reaching past the field into the next record
  const check = (i: number): void => {
    if (!((i >>> 0) === i && i < count))
      throw new PsyneError("INVALID_ARGUMENT", `field ${field} has ${count} elements: index ${describe(i)} is out of range`);
  };
  const get = elementGet(element, owner, offset, check);
  const set = writable
    ? elementSet(element, owner, offset, check)
    : () => {
        throw new PsyneError("INVALID_STATE", `field ${field} of a reader is read-only`);
      };
  return {
    length: count,
    get,
    set,
    copyFrom(values) {
      if (typeof values !== "object" || values === null || typeof values.length !== "number")
        throw new PsyneError("INVALID_ARGUMENT", `field ${field}: copyFrom(values) takes an array or typed array, got ${describe(values)}`);
      if (values.length > count) throw new PsyneError("INVALID_ARGUMENT", `field ${field} holds ${count} elements, got ${values.length}`);
      for (let i = 0; i < values.length; i++) set(i, values[i]!);
    },
    toArray: () => Array.from({ length: count }, (_, i) => get(i)),
  };
}

function fieldArrays(owner: Positioned, fields: FieldLayout, writable: boolean): void {
  for (const [field, { offset, spec }] of Object.entries(fields)) {
    if (!Array.isArray(spec)) continue;
    Object.defineProperty(owner, field, { value: arrayField(owner, spec[0], spec[1], offset, field, writable), enumerable: true });
  }
}

// Names a writer or reader has itself: a struct field of such a name cannot have a flyweight.
const memberNames = ["claim", "claimAsync", "send", "discard", "claimed", "next", "release", "positioned", "constructor"];

function scalarFields(prototype: object, fields: FieldLayout, writable: boolean): void {
  for (const [field, { offset, spec }] of Object.entries(fields)) {
    if (Array.isArray(spec) || memberNames.includes(field)) continue;
    const descriptor: PropertyDescriptor = { get: scalarGet(spec, offset), enumerable: true };
    if (writable) descriptor.set = scalarSet(spec, offset);
    Object.defineProperty(prototype, field, descriptor);
  }
}

function checkFlyChannel(channel: unknown, call: string): FlyweightChannel {
  if (typeof channel !== "object" || channel === null || typeof (channel as FlyweightChannel)[FLY_CLAIM] !== "function")
    throw new PsyneError("INVALID_ARGUMENT", `${call} needs a channel from createChannel(), got ${describe(channel)}`);
  return channel as FlyweightChannel;
}

export interface StructWriter {
  /** Positions the writer on a new record (its fields are zero... or stale: write every one); false when the channel is full. */
  claim(): boolean;
  /** claim(), waiting for room; rejects with ChannelFullError on timeout, with the signal's reason on abort. */
  claimAsync(options?: { timeout?: number | undefined; signal?: AbortSignal | undefined }): Promise<void>;
  /** Publishes the claimed record; the fields are unusable until the next claim(). */
  send(): void;
  /** Drops the claimed record unsent (nothing when none is claimed). */
  discard(): void;
  /** A record is claimed and not yet sent. */
  readonly claimed: boolean;
}

export interface StructReader {
  /** Positions the reader on the next message, releasing the one before; false when there is none. */
  next(): boolean;
  /** next(), waiting for a message (parked, as recv()): false when `timeout` ms pass first; rejects with the signal's reason on abort. */
  nextAsync(options?: { timeout?: number | undefined; signal?: AbortSignal | undefined }): Promise<boolean>;
  /** Releases the message the reader is on (nothing when it is on none). */
  release(): void;
  /** The reader is on a message. */
  readonly positioned: boolean;
}

/**
 * The writer and reader classes of one struct type. `sendSide`/`receiveSide` find the channel a
 * handle sends into or receives from (a network channel's local rings).
 */
export function flyweightClasses(
  type: FlyType,
  fields: FieldLayout,
  sendSide: (channel: FlyweightChannel) => FlyweightChannel,
  receiveSide: (channel: FlyweightChannel) => FlyweightChannel,
): { writer(channel: unknown): StructWriter; reader(channel: unknown): StructReader } {
  const name = type.typeName;
  const WRITER_OUTSIDE = outside(
    `a ${name} writer's fields are usable from a claim() that returned true (or a claimAsync() that resolved) until send() or discard()`,
  );
  const READER_OUTSIDE = outside(
    `a ${name} reader's fields are usable from a next() that returned true until the next next() or release() (or another receive on its channel handle)`,
  );

  class Writer implements StructWriter {
    [VIEW]: DataView = WRITER_OUTSIDE;
    [AT] = -1;
    [RING]: FlyweightChannel;
    [RING_VIEW]: DataView;
    #waiting = false; // a claimAsync() of this writer is pending

    constructor(channel: FlyweightChannel) {
      this[RING] = channel;
      this[RING_VIEW] = channel[FLY_VIEW]();
      fieldArrays(this, fields, true);
    }

    claim(): boolean {
      if (this[AT] >= 0 || this.#waiting) throw this.#busy("claim()");
      const at = this[RING][FLY_CLAIM](type);
      if (at < 0) return false;
      this[AT] = at;
      this[VIEW] = this[RING_VIEW];
      return true;
    }

    async claimAsync(options?: { timeout?: number | undefined; signal?: AbortSignal | undefined }): Promise<void> {
      const checked = checkWaitOptions(options, `${name} writer claimAsync()`);
      if (this[AT] >= 0 || this.#waiting) throw this.#busy("claimAsync()");
      this.#waiting = true;
      try {
        const at = await this[RING][FLY_CLAIM_ASYNC](type, checked);
        this[AT] = at;
        this[VIEW] = this[RING_VIEW];
      } finally {
        this.#waiting = false;
      }
    }

    send(): void {
      const at = this[AT];
      if (at < 0) throw new PsyneError("INVALID_STATE", `send() of a ${name} writer that has no record claimed: claim() first`);
      this[AT] = -1;
      this[VIEW] = WRITER_OUTSIDE;
      this[RING][FLY_COMMIT](at);
    }

    discard(): void {
      const at = this[AT];
      if (at < 0) return;
      this[AT] = -1;
      this[VIEW] = WRITER_OUTSIDE;
      this[RING][FLY_ABANDON](at);
    }

    get claimed(): boolean {
      return this[AT] >= 0;
    }

    #busy(call: string): PsyneError {
      return new PsyneError(
        "INVALID_STATE",
        this.#waiting
          ? `${call} of a ${name} writer while its claimAsync() is pending: await it first`
          : `${call} of a ${name} writer whose claimed record is not sent yet: send() or discard() it first`,
      );
    }
  }
  scalarFields(Writer.prototype, fields, true);
  Object.defineProperty(Writer, "name", { value: `${name}Writer` });

  class Reader implements StructReader, Unholdable {
    [VIEW]: DataView = READER_OUTSIDE;
    [AT] = -1;
    [RING]: FlyweightChannel;
    [RING_VIEW]: DataView;

    constructor(channel: FlyweightChannel) {
      this[RING] = channel;
      this[RING_VIEW] = channel[FLY_VIEW]();
      fieldArrays(this, fields, false);
    }

    next(): boolean {
      this[AT] = -1;
      this[VIEW] = READER_OUTSIDE;
      const at = this[RING][FLY_POLL](this, type);
      if (at < 0) return false;
      this[AT] = at;
      this[VIEW] = this[RING_VIEW];
      return true;
    }

    async nextAsync(options?: { timeout?: number | undefined; signal?: AbortSignal | undefined }): Promise<boolean> {
      const checked = checkWaitOptions(options, `${name} reader nextAsync()`);
      this[AT] = -1;
      this[VIEW] = READER_OUTSIDE;
      const at = await this[RING][FLY_POLL_ASYNC](this, type, checked);
      if (at < 0) return false;
      this[AT] = at;
      this[VIEW] = this[RING_VIEW];
      return true;
    }

    release(): void {
      if (this[AT] < 0) return;
      this[AT] = -1;
      this[VIEW] = READER_OUTSIDE;
      this[RING][FLY_RELEASE](this);
    }

    get positioned(): boolean {
      return this[AT] >= 0;
    }

    [UNHOLD](): void {
      this[AT] = -1;
      this[VIEW] = READER_OUTSIDE;
    }
  }
  scalarFields(Reader.prototype, fields, false);
  Object.defineProperty(Reader, "name", { value: `${name}Reader` });

  const clash = Object.keys(fields).find((field) => memberNames.includes(field));
  const checkNames = (what: string): void => {
    if (clash !== undefined)
      throw new PsyneError("INVALID_ARGUMENT", `${name}.${what}(channel): field ${clash} has the name of a ${what}'s own member; rename the field to use a ${what}`);
  };
  return {
    writer: (channel) => (checkNames("writer"), new Writer(sendSide(checkFlyChannel(channel, `${name}.writer(channel)`)))),
    reader: (channel) => (checkNames("reader"), new Reader(receiveSide(checkFlyChannel(channel, `${name}.reader(channel)`)))),
  };
}
