// Message types: typed-array vectors and fixed-layout structs whose memory is the message's bytes
// inside the channel. A message is allocated in place, written, sent; a received one is a view of
// channel memory until it is released. After send or release every psyne method throws
// INVALID_STATE; in checked mode (PSYNE_CHECKED=1) the elements do too (see CHECKED).
import { checkUint32, describe, invalidArgument } from "./check";
import { PsyneError } from "./errors";
import { type FieldArray, type FieldLayout, type FlyweightChannel, flyweightClasses, type StructReader, type StructWriter, type WritableFieldArray } from "./flyweight";
import { layout } from "./layout";

/**
 * Checked mode, read once at load (PSYNE_CHECKED=1; for tests and development). Each message is a
 * view of its own ArrayBuffer instead of channel memory: an allocated one is copied into the channel
 * when sent, a received one is copied out when received, and the buffer is detached
 * (ArrayBuffer.prototype.transfer) on send, release and discard. A stale reference then fails
 * where it is used (a TypeError from any typed-array method or DataView, length 0, undefined
 * elements) instead of reading or writing memory that now belongs to another message.
 */
export const CHECKED: boolean = process.env.PSYNE_CHECKED === "1";

/** What a message needs from its channel; implemented by Channel under these symbol keys. */
export const ALLOC = Symbol("psyne.alloc");
export const BUFFER = Symbol("psyne.buffer");
export const RELEASE = Symbol("psyne.release");
export const DISCARD = Symbol("psyne.discard");
export const ALLOC_ASYNC = Symbol("psyne.allocAsync");

/** Options of the waiting calls: see src/core/waiting.ts. */
export interface AllocOptions {
  timeout?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** A channel whose messages live in another channel: a network channel's local send ring. */
export const SEND_SIDE = Symbol("psyne.sendSide");
/** The channel a network channel receives from: its local receive ring (for T.reader). */
export const RECEIVE_SIDE = Symbol("psyne.receiveSide");

export interface MessageChannel {
  [SEND_SIDE]?(): MessageChannel;
  /** Payload byte offset of a new record in [BUFFER], or -1 when full and `orNull`. */
  [ALLOC](byteLength: number, type: { typeName: string; typeId: number }, orNull: boolean): number;
  [BUFFER](): ArrayBuffer;
  [RELEASE](message: Message): void;
  [DISCARD](message: Message): void;
  [ALLOC_ASYNC]<M>(type: MessageClass<M>, length: number | undefined, options?: AllocOptions): Promise<M>;
  readonly uri: string;
}

export const enum MessageState {
  Allocated, // in the channel, not sent yet
  Sent, // published; the producer must not touch it
  Received, // a view of a received record, valid until released
  Released, // its record may be overwritten
  Detached, // a copy in process memory
}

/**
 * Per-message bookkeeping, kept on the message under META. A view made with .as() has its own
 * meta whose `owner` is the message's; state changes go through retire(), which updates the
 * owner and every view at once.
 */
export interface MessageMeta {
  channel: MessageChannel | null;
  type: MessageType;
  typeId: number; // the id on the wire (differs from type.typeId for an unknown type viewed as bytes)
  state: MessageState;
  buffer: ArrayBuffer; // the memory the message views: the channel's mapping, or its own (copies, checked mode)
  byteOffset: number; // payload offset in `buffer`
  byteLength: number; // payload bytes
  recordOffset: number; // payload offset in the channel's mapping (-1 for a detached copy)
  owner: MessageMeta | null; // for a view made with .as(): the viewed message's meta
  views: MessageMeta[] | null; // the metas of views made with .as() of this message
}

/** A message's meta; the caller fills in nothing else (one shape for every message). */
export function makeMeta(
  channel: MessageChannel | null,
  type: MessageType,
  typeId: number,
  state: MessageState,
  buffer: ArrayBuffer,
  byteOffset: number,
  byteLength: number,
  recordOffset: number,
): MessageMeta {
  return { channel, type, typeId, state, buffer, byteOffset, byteLength, recordOffset, owner: null, views: null };
}

/**
 * Ends a message's life in the channel (Sent or Released), for it and every .as() view of it; in
 * checked mode its own buffer is detached, so stale element access fails where it happens.
 */
export function retire(meta: MessageMeta, state: MessageState.Sent | MessageState.Released): void {
  const root = meta.owner ?? meta;
  root.state = state;
  const views = root.views;
  if (views !== null) for (let i = 0; i < views.length; i++) views[i]!.state = state;
  if (CHECKED && root.recordOffset >= 0) root.buffer.transfer(0);
}

export const META = Symbol("psyne.meta");

/** Members every message has, vectors and structs alike. */
export interface Message {
  /** The type's name: "FloatVector", "text", "json", a defineMessage name, or "type#ID" if unknown here. */
  readonly type: string;
  readonly typeId: number;
  /** Bytes of payload. */
  readonly byteLength: number;
  /** Ends a received message's validity and frees its space (also done by the next receive()). */
  release(): void;
  /** Drops an allocated message without sending it. */
  discard(): void;
  /** A copy in process memory, valid forever; sending it copies it into a channel. */
  copy(): this;
  /** The same bytes viewed as another type (for a message received without a type). */
  as<M>(type: MessageClass<M>): M;
  /** The payload as a Uint8Array view (same memory). */
  bytes(): Uint8Array;
  /** The payload decoded as UTF-8. */
  text(): string;
  /** The payload decoded as UTF-8 JSON. */
  json<T = unknown>(): T;
  [Symbol.dispose](): void;
  [META]: MessageMeta;
}

/** A message class: a vector type, a defineMessage struct, or the text/json pseudo-types. */
export interface MessageType {
  readonly typeName: string;
  readonly typeId: number;
  /** Builds the message object over bytes that already exist (meta.buffer at meta.byteOffset). */
  view(meta: MessageMeta): Message;
  /** Payload bytes for `count` elements (vectors) or the struct size. */
  byteLengthFor(count: number | undefined): number;
  /** The fewest payload bytes a message of this type has (0 for vectors, the size for structs). */
  readonly minBytes: number;
}

export interface MessageClass<M> extends MessageType {
  new (channel: MessageChannel, length?: number): M;
}

/** Built-in type ids, from csrc/layout.h (C and Python programs use the same). */
export const TypeId = {
  FloatVector: layout.TYPE_FLOAT_VECTOR,
  DoubleVector: layout.TYPE_DOUBLE_VECTOR,
  Int32Vector: layout.TYPE_INT32_VECTOR,
  ByteVector: layout.TYPE_BYTE_VECTOR,
  text: layout.TYPE_TEXT,
  json: layout.TYPE_JSON,
} as const;

const registry = new Map<number, MessageType>();
export const typeById = (id: number): MessageType | undefined => registry.get(id);
const knownTypes = new WeakSet<object>(); // every type ever made here, also one a later same-named definition replaced

/** Is `value` a psyne message type (a vector type, a defineMessage class)? */
export function isMessageType(value: unknown): value is MessageType {
  return (typeof value === "function" || typeof value === "object") && value !== null && knownTypes.has(value);
}

let lastChecked: unknown = null; // the type checked last: a loop over one type pays one comparison

/** Throws INVALID_ARGUMENT unless `value` is a message type; `what` names the argument. */
export function checkMessageType(value: unknown, what: string): MessageType {
  if (value !== lastChecked) {
    if (!isMessageType(value))
      throw invalidArgument(what, "a message type (FloatVector, DoubleVector, Int32Vector, ByteVector or a defineMessage() class)", value);
    lastChecked = value;
  }
  return value as MessageType;
}

function register(type: MessageType): void {
  knownTypes.add(type);
  const existing = registry.get(type.typeId);
  if (existing && existing.typeName !== type.typeName)
    throw new PsyneError(
      "INVALID_ARGUMENT",
      `message type ${type.typeName} has type id ${type.typeId}, already used by ${existing.typeName}: rename one`,
    );
  registry.set(type.typeId, type);
}

const decoder = new TextDecoder();

function stateError(meta: MessageMeta, action: string): PsyneError {
  const what = [
    "allocated and unsent (send() or discard() it)",
    "already sent: after send() its memory belongs to the channel",
    "received",
    "released (by release(), this handle's next receive(), or close()): copy() a message to keep it",
    "a detached copy",
  ][meta.state];
  return new PsyneError("INVALID_STATE", `cannot ${action} a ${meta.type.typeName} message that is ${what}`);
}

/** Throws INVALID_STATE once the message was sent or released. */
function checkLive(meta: MessageMeta, action: string): void {
  const state = meta.state;
  if (state === MessageState.Sent || state === MessageState.Released) throw stateError(meta, action);
}

/** Methods shared by vectors and structs; installed on both prototypes. */
const messageMethods = {
  get type() {
    const meta = (this as unknown as Message)[META];
    return meta.typeId === meta.type.typeId ? meta.type.typeName : `type#${meta.typeId}`;
  },
  get typeId() {
    return (this as unknown as Message)[META].typeId;
  },
  release(this: Message) {
    const meta = this[META];
    const state = meta.state;
    if (state === MessageState.Received) meta.channel?.[RELEASE](this);
    else if (state !== MessageState.Detached) throw stateError(meta, "release");
  },
  discard(this: Message) {
    const meta = this[META];
    if (meta.state !== MessageState.Allocated) throw stateError(meta, "discard");
    meta.channel?.[DISCARD](this);
  },
  // the end of a `using` block: releases or discards what is still live, and is silent otherwise
  [Symbol.dispose](this: Message) {
    const meta = this[META];
    if (meta.state === MessageState.Received) meta.channel?.[RELEASE](this);
    else if (meta.state === MessageState.Allocated) meta.channel?.[DISCARD](this);
  },
  bytes(this: Message) {
    const meta = this[META];
    checkLive(meta, "read the bytes of");
    return new Uint8Array(meta.buffer, meta.byteOffset, meta.byteLength);
  },
  text(this: Message) {
    const meta = this[META];
    checkLive(meta, "read the text of");
    return decoder.decode(new Uint8Array(meta.buffer, meta.byteOffset, meta.byteLength));
  },
  json(this: Message) {
    const meta = this[META];
    checkLive(meta, "read the JSON of");
    return JSON.parse(decoder.decode(new Uint8Array(meta.buffer, meta.byteOffset, meta.byteLength)));
  },
  copy(this: Message) {
    const meta = this[META];
    checkLive(meta, "copy");
    const buffer = meta.buffer.slice(meta.byteOffset, meta.byteOffset + meta.byteLength);
    return meta.type.view(makeMeta(null, meta.type, meta.typeId, MessageState.Detached, buffer, 0, meta.byteLength, -1));
  },
  as(this: Message, type: MessageType) {
    const meta = this[META];
    checkLive(meta, "view");
    checkMessageType(type, "as(type): type");
    if (type.minBytes > meta.byteLength)
      throw new PsyneError(
        "MESSAGE_TYPE",
        `a ${this.type} message of ${meta.byteLength} bytes is too short for ${type.typeName} (${type.minBytes} bytes)`,
      );
    // the view shares the record (and, in checked mode, the buffer): it lives and dies with it
    const viewMeta = makeMeta(meta.channel, type, meta.typeId, meta.state, meta.buffer, meta.byteOffset, meta.byteLength, meta.recordOffset);
    if (meta.state !== MessageState.Detached) {
      const root = meta.owner ?? meta;
      viewMeta.owner = root;
      (root.views ??= []).push(viewMeta);
    }
    return type.view(viewMeta);
  },
};

// Names a struct field cannot take: the members every message has (and Object.prototype's).
const reservedFieldNames = new Set<string>([
  ...Object.keys(Object.getOwnPropertyDescriptors(messageMethods)),
  "view",
  "byteLength",
  "toJSON",
  ...Object.getOwnPropertyNames(Object.prototype),
]);

function installMessageMethods(prototype: object): void {
  const descriptors = Object.getOwnPropertyDescriptors(messageMethods);
  for (const key of Reflect.ownKeys(descriptors)) {
    Object.defineProperty(prototype, key, { ...descriptors[key as keyof typeof descriptors], enumerable: false });
  }
}

function checkCount(typeName: string, count: unknown): number {
  return checkUint32(count, `${typeName} length`);
}

function checkChannel(typeName: string, channel: unknown): MessageChannel {
  if (typeof channel !== "object" || channel === null || typeof (channel as MessageChannel)[ALLOC] !== "function")
    throw new PsyneError("INVALID_ARGUMENT", `new ${typeName}(channel, ...) needs a channel from createChannel(), got ${describe(channel)}`);
  // a network channel's messages are allocated in its local send ring, and belong to it
  return (channel as MessageChannel)[SEND_SIDE]?.() ?? (channel as MessageChannel);
}

/**
 * Claims `byteLength` bytes for a new message and returns its meta: over channel memory, or in
 * checked mode over a buffer of its own that send() copies in.
 */
function allocMeta(channel: MessageChannel, type: MessageType, byteLength: number): MessageMeta {
  const offset = channel[ALLOC](byteLength, type, false);
  return CHECKED
    ? makeMeta(channel, type, type.typeId, MessageState.Allocated, new ArrayBuffer(byteLength), 0, byteLength, offset)
    : makeMeta(channel, type, type.typeId, MessageState.Allocated, channel[BUFFER](), offset, byteLength, offset);
}

// ---- vectors -------------------------------------------------------------------------------

type TypedArrayConstructor =
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | Int32ArrayConstructor
  | Uint8ArrayConstructor;

/** A vector type: `new T(channel, n)` allocates n elements in the channel. */
export interface VectorClass<A> extends MessageClass<A & Message> {
  new (channel: MessageChannel, length: number): A & Message;
  readonly BYTES_PER_ELEMENT: number;
  /** Allocates `length` elements, waiting while the channel is full (ChannelFullError on timeout). */
  allocAsync(channel: MessageChannel, length: number, options?: AllocOptions): Promise<A & Message>;
}

// Set just before constructing a view of existing bytes; the constructor then skips allocation.
// (A plain variable, not an object: this runs once per received message.)
let pendingMeta: MessageMeta | null = null;

function vectorClass<A>(Base: TypedArrayConstructor, typeName: string, typeId: number): VectorClass<A> {
  const elementSize = Base.BYTES_PER_ELEMENT;
  // @ts-ignore: a class over a union of typed-array constructors
  class Vector extends Base {
    static readonly typeName = typeName;
    static readonly typeId = typeId;
    static readonly minBytes = 0;
    // derived arrays (subarray, map, filter, slice) are plain typed arrays, not messages
    static get [Symbol.species]() {
      return Base;
    }
    // a private field, read through the [META] getter below: adding a symbol-keyed property to a
    // typed array costs about 30 ns (a slow path that grows its storage), a private field about 8
    #meta: MessageMeta;
    get [META](): MessageMeta {
      return this.#meta;
    }

    constructor(channel: MessageChannel, length: number) {
      let meta = pendingMeta;
      if (meta) pendingMeta = null;
      else meta = allocMeta(checkChannel(typeName, channel), Vector, checkCount(typeName, length) * elementSize);
      super(meta.buffer, meta.byteOffset, (meta.byteLength / elementSize) | 0);
      this.#meta = meta;
    }

    static view(meta: MessageMeta): Message {
      pendingMeta = meta;
      return new Vector(null as unknown as MessageChannel, 0) as unknown as Message;
    }

    static byteLengthFor(count: number | undefined): number {
      return count === undefined ? 0 : checkCount(typeName, count) * elementSize;
    }

    static allocAsync(channel: MessageChannel, length: number, options?: AllocOptions): Promise<Message> {
      try {
        checkCount(typeName, length);
        return checkChannel(typeName, channel)[ALLOC_ASYNC](Vector as unknown as MessageClass<Message>, length, options);
      } catch (error) {
        return Promise.reject(error);
      }
    }
  }
  installMessageMethods(Vector.prototype);
  Object.defineProperty(Vector, "name", { value: typeName });
  register(Vector as unknown as MessageType);
  return Vector as unknown as VectorClass<A>;
}

export const FloatVector = vectorClass<Float32Array>(Float32Array, "FloatVector", TypeId.FloatVector);
export type FloatVector = InstanceType<typeof FloatVector>;
export const DoubleVector = vectorClass<Float64Array>(Float64Array, "DoubleVector", TypeId.DoubleVector);
export type DoubleVector = InstanceType<typeof DoubleVector>;
export const Int32Vector = vectorClass<Int32Array>(Int32Array, "Int32Vector", TypeId.Int32Vector);
export type Int32Vector = InstanceType<typeof Int32Vector>;
export const ByteVector = vectorClass<Uint8Array>(Uint8Array, "ByteVector", TypeId.ByteVector);
export type ByteVector = InstanceType<typeof ByteVector>;

/** Pseudo-types of the copying sends: their messages arrive as ByteVectors. */
function bytesPseudoType(typeName: string, typeId: number): MessageType {
  const type: MessageType = {
    typeName,
    typeId,
    view: (meta) => ByteVector.view(meta), // meta.type is this pseudo-type: .type says "text" or "json"
    byteLengthFor: () => 0,
    minBytes: 0,
  };
  register(type);
  return type;
}
export const TextType = bytesPseudoType("text", TypeId.text);
export const JsonType = bytesPseudoType("json", TypeId.json);

/** Does a message of wire type `typeId` satisfy receive(type)? Text and JSON are bytes too. */
export function accepts(type: MessageType, typeId: number): boolean {
  return type.typeId === typeId || (type === ByteVector && (typeId === TypeId.text || typeId === TypeId.json));
}

// ---- structs -------------------------------------------------------------------------------

type Scalar = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64" | "f32" | "f64" | "bool";
export type FieldSpec = Scalar | [Exclude<Scalar, "u64" | "i64" | "bool">, number];

type ScalarValue<S> = S extends "u64" | "i64" ? bigint : S extends "bool" ? boolean : number;
type ArrayValue<S> = S extends "f32"
  ? Float32Array
  : S extends "f64"
    ? Float64Array
    : S extends "u8"
      ? Uint8Array
      : S extends "i8"
        ? Int8Array
        : S extends "u16"
          ? Uint16Array
          : S extends "i16"
            ? Int16Array
            : S extends "u32"
              ? Uint32Array
              : Int32Array;
export type StructFields<F extends Record<string, FieldSpec>> = {
  [K in keyof F]: F[K] extends [infer S, number] ? ArrayValue<S> : F[K] extends Scalar ? ScalarValue<F[K]> : never;
};

/** A writer's fields: scalars as on an instance, arrays as indexed accessors. */
export type WriterFields<F extends Record<string, FieldSpec>> = {
  [K in keyof F]: F[K] extends [string, number] ? WritableFieldArray : F[K] extends Scalar ? ScalarValue<F[K]> : never;
};
/** A reader's fields: read-only. */
export type ReaderFields<F extends Record<string, FieldSpec>> = {
  readonly [K in keyof F]: F[K] extends [string, number] ? FieldArray : F[K] extends Scalar ? ScalarValue<F[K]> : never;
};

export interface StructClass<F extends Record<string, FieldSpec>> extends MessageClass<StructFields<F> & Message> {
  new (channel: MessageChannel): StructFields<F> & Message;
  /**
   * One reusable object that writes messages of this type in place (no object per message):
   * claim() (false when full) or await claimAsync(), write its fields, send().
   */
  writer(channel: MessageChannel): StructWriter & WriterFields<F>;
  /**
   * One reusable object that reads messages of this type in place: next() (false when empty,
   * MessageTypeError as receive(T)), read its fields, and next() again or release().
   */
  reader(channel: MessageChannel): StructReader & ReaderFields<F>;
  /** Allocates one, waiting while the channel is full (ChannelFullError on timeout). */
  allocAsync(channel: MessageChannel, options?: AllocOptions): Promise<StructFields<F> & Message>;
  readonly byteLength: number;
  readonly fields: Readonly<Record<string, { offset: number; spec: FieldSpec }>>;
}

interface StructInstance {
  view: DataView;
}

const scalarSize: Record<Scalar, number> = { u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8 };
const arrayCtor = {
  u8: Uint8Array,
  i8: Int8Array,
  u16: Uint16Array,
  i16: Int16Array,
  u32: Uint32Array,
  i32: Int32Array,
  f32: Float32Array,
  f64: Float64Array,
} as const;

// One DataView per channel mapping, shared by every struct message over it (a DataView costs
// about 25 ns to make); a copy or a checked-mode message has a buffer and a DataView of its own.
const channelViews = new WeakMap<ArrayBuffer, DataView>();
let lastBuffer: ArrayBuffer | null = null;
let lastView: DataView = new DataView(new ArrayBuffer(0));
export function channelView(buffer: ArrayBuffer): DataView {
  if (buffer !== lastBuffer) {
    let view = channelViews.get(buffer);
    if (view === undefined) channelViews.set(buffer, (view = new DataView(buffer)));
    lastBuffer = buffer;
    lastView = view;
  }
  return lastView;
}

function fnv1a(text: string): number {
  let hash = 2166136261;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619);
  return hash >>> 0;
}

function scalarAccessor(scalar: Scalar, offset: number): PropertyDescriptor {
  const at = (self: StructInstance & Message) => {
    const meta = self[META];
    checkLive(meta, "read or write");
    return meta.byteOffset + offset;
  };
  type Self = StructInstance & Message;
  // one getter and setter per type, each calling DataView directly (a call through a shared helper
  // cannot be inlined, and cost about 3 ns a field)
  const rw: Record<Scalar, () => [(this: Self) => unknown, (this: Self, x: never) => void]> = {
    u8: () => [function () { return this.view.getUint8(at(this)); }, function (x: number) { this.view.setUint8(at(this), x); }],
    i8: () => [function () { return this.view.getInt8(at(this)); }, function (x: number) { this.view.setInt8(at(this), x); }],
    bool: () => [function () { return this.view.getUint8(at(this)) !== 0; }, function (x: unknown) { this.view.setUint8(at(this), x ? 1 : 0); }],
    u16: () => [function () { return this.view.getUint16(at(this), true); }, function (x: number) { this.view.setUint16(at(this), x, true); }],
    i16: () => [function () { return this.view.getInt16(at(this), true); }, function (x: number) { this.view.setInt16(at(this), x, true); }],
    u32: () => [function () { return this.view.getUint32(at(this), true); }, function (x: number) { this.view.setUint32(at(this), x, true); }],
    i32: () => [function () { return this.view.getInt32(at(this), true); }, function (x: number) { this.view.setInt32(at(this), x, true); }],
    f32: () => [function () { return this.view.getFloat32(at(this), true); }, function (x: number) { this.view.setFloat32(at(this), x, true); }],
    f64: () => [function () { return this.view.getFloat64(at(this), true); }, function (x: number) { this.view.setFloat64(at(this), x, true); }],
    u64: () => [function () { return this.view.getBigUint64(at(this), true); }, function (x: bigint | number) { this.view.setBigUint64(at(this), BigInt(x), true); }],
    i64: () => [function () { return this.view.getBigInt64(at(this), true); }, function (x: bigint | number) { this.view.setBigInt64(at(this), BigInt(x), true); }],
  };
  const [get, set] = rw[scalar]();
  return { get, set, enumerable: true };
}

function arrayAccessor(element: keyof typeof arrayCtor, count: number, offset: number, field: string): PropertyDescriptor {
  const Ctor = arrayCtor[element];
  return {
    get(this: StructInstance & Message) {
      const meta = this[META];
      checkLive(meta, "read or write");
      return new Ctor(meta.buffer, meta.byteOffset + offset, count);
    },
    set(this: StructInstance & Message, value: ArrayLike<number>) {
      if (typeof value !== "object" || value === null || typeof value.length !== "number")
        throw invalidArgument(`field ${field}`, `an array or typed array of up to ${count} numbers`, value);
      if (value.length > count)
        throw new PsyneError("INVALID_ARGUMENT", `field ${field} holds ${count} elements, got ${value.length}`);
      (this as unknown as Record<string, InstanceType<typeof Ctor>>)[field]!.set(value as never);
    },
    enumerable: true,
  };
}

/**
 * A fixed-layout struct message type, laid out like a C struct (fields in order, each aligned to
 * its size, little-endian). The type id is a hash of the name and layout, so processes that define
 * the same struct agree, and a process with a different layout gets MessageTypeError.
 *
 *   const Request = defineMessage("Request", { request_id: "u64", op: "u32", value: "f64", data: ["f32", 16] });
 *   const r = new Request(channel); r.op = 1; channel.send(r);
 */
export function defineMessage<F extends Record<string, FieldSpec>>(name: string, fields: F): StructClass<F> {
  if (typeof name !== "string" || !/^[A-Za-z_][A-Za-z0-9_.]*$/.test(name))
    throw invalidArgument("defineMessage(name, fields): name", "an identifier ([A-Za-z_][A-Za-z0-9_.]*)", name);
  if (typeof fields !== "object" || fields === null || Array.isArray(fields))
    throw invalidArgument(`defineMessage(${JSON.stringify(name)}, fields): fields`, 'an object of field types, e.g. { id: "u32", data: ["f32", 16] }', fields);
  const layoutOf: Record<string, { offset: number; spec: FieldSpec }> = {};
  const descriptors: PropertyDescriptorMap = {};
  let offset = 0;
  let maxAlign = 1;
  for (const [field, spec] of Object.entries(fields)) {
    const isArray = Array.isArray(spec);
    const [element, count] = isArray ? (spec as unknown[]) : [spec, 0];
    const known = isArray
      ? spec.length === 2 && typeof element === "string" && Object.hasOwn(arrayCtor, element) && Number.isInteger(count) && (count as number) >= 1 && (count as number) <= 0x7fffffff
      : typeof element === "string" && Object.hasOwn(scalarSize, element);
    if (!known)
      throw new PsyneError(
        "INVALID_ARGUMENT",
        `field ${field} of ${name} has an unknown type ${isArray ? `[${(spec as unknown[]).map(describe).join(", ")}]` : describe(spec)}: use one of ${Object.keys(scalarSize).join(", ")}, or [element, count] with a numeric element (not u64, i64 or bool) and a count >= 1`,
      );
    if (reservedFieldNames.has(field))
      throw new PsyneError("INVALID_ARGUMENT", `field name ${field} of ${name} is reserved: every message has a member of that name`);
    const size = scalarSize[element as Scalar];
    offset = Math.ceil(offset / size) * size;
    maxAlign = Math.max(maxAlign, size);
    layoutOf[field] = { offset, spec };
    descriptors[field] = isArray
      ? arrayAccessor(element as keyof typeof arrayCtor, count as number, offset, field)
      : scalarAccessor(element as Scalar, offset);
    offset += size * (isArray ? (count as number) : 1);
  }
  const byteLength = Math.ceil(offset / maxAlign) * maxAlign;
  const signature = `${name}{${Object.entries(layoutOf)
    .map(([f, l]) => `${f}:${JSON.stringify(l.spec)}@${l.offset}`)
    .join(",")}}`;
  let typeId = fnv1a(signature);
  if (typeId < 256) typeId += 256; // ids below 256 are psyne's own

  let viewing: MessageMeta | null = null;
  const flyweights = flyweightClasses(
    { typeName: name, typeId, byteLength },
    layoutOf as FieldLayout,
    (channel) => ((channel as unknown as MessageChannel)[SEND_SIDE]?.() ?? channel) as FlyweightChannel,
    (channel) => ((channel as { [RECEIVE_SIDE]?(): unknown })[RECEIVE_SIDE]?.() ?? channel) as FlyweightChannel,
  );
  class Struct {
    static readonly typeName = name;
    static readonly typeId = typeId;
    static readonly byteLength = byteLength;
    static readonly minBytes = byteLength;
    static readonly fields = Object.freeze(layoutOf);
    declare [META]: MessageMeta;
    declare view: DataView;

    constructor(channel: MessageChannel) {
      let meta = viewing;
      if (meta) viewing = null;
      else meta = allocMeta(checkChannel(name, channel), Struct, byteLength);
      this[META] = meta;
      this.view = CHECKED || meta.recordOffset < 0 ? new DataView(meta.buffer) : channelView(meta.buffer);
    }

    get byteLength(): number {
      return byteLength;
    }

    toJSON(): Record<string, unknown> {
      const out: Record<string, unknown> = {};
      for (const field of Object.keys(layoutOf)) {
        const value = (this as unknown as Record<string, unknown>)[field];
        out[field] = typeof value === "bigint" ? value.toString() : ArrayBuffer.isView(value) ? Array.from(value as Float32Array) : value;
      }
      return out;
    }

    static view(meta: MessageMeta): Message {
      viewing = meta;
      return new Struct(null as unknown as MessageChannel) as unknown as Message;
    }

    static byteLengthFor(): number {
      return byteLength;
    }

    static writer(channel: MessageChannel): StructWriter {
      return flyweights.writer(channel);
    }

    static reader(channel: MessageChannel): StructReader {
      return flyweights.reader(channel);
    }

    static allocAsync(channel: MessageChannel, options?: AllocOptions): Promise<Message> {
      try {
        return checkChannel(name, channel)[ALLOC_ASYNC](Struct as unknown as MessageClass<Message>, undefined, options);
      } catch (error) {
        return Promise.reject(error);
      }
    }
  }
  Object.defineProperties(Struct.prototype, descriptors);
  installMessageMethods(Struct.prototype);
  Object.defineProperty(Struct, "name", { value: name });
  register(Struct as unknown as MessageType);
  return Struct as unknown as StructClass<F>;
}
