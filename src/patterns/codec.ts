// Encodes the values request-response and the process pool carry: JSON values, strings, typed
// arrays and DataViews (which travel as their bytes and arrive as the same kind of view).
import { PsyneError, RemoteError } from "../core/errors";

const typedArrayKinds = [
  Uint8Array,
  Int8Array,
  Uint16Array,
  Int16Array,
  Uint32Array,
  Int32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
  Uint8ClampedArray,
] as const;

const Kind = { Json: 0, String: 1, Undefined: 2, ArrayBuffer: 3, DataView: 4, TypedArray: 10 } as const;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface Encoded {
  kind: number;
  bytes: Uint8Array;
}

/** Encodes `value`; throws a PsyneError (INVALID_ARGUMENT) naming what cannot be sent. */
export function encodeValue(value: unknown): Encoded {
  if (value === undefined) return { kind: Kind.Undefined, bytes: new Uint8Array(0) };
  if (typeof value === "string") return { kind: Kind.String, bytes: encoder.encode(value) };
  if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return { kind: Kind.ArrayBuffer, bytes: new Uint8Array(value) };
  if (ArrayBuffer.isView(value)) {
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    if (value instanceof DataView) return { kind: Kind.DataView, bytes };
    const at = typedArrayKinds.findIndex((T) => value instanceof T);
    if (at < 0) throw new PsyneError("INVALID_ARGUMENT", `cannot send a ${value.constructor.name}`);
    return { kind: Kind.TypedArray + at, bytes };
  }
  if (typeof value === "bigint") throw new PsyneError("INVALID_ARGUMENT", `cannot send a BigInt (${value}n): it is not a JSON value`);
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new PsyneError("INVALID_ARGUMENT", `value is not JSON: ${textOf(err instanceof Error ? err.message : err)}`);
  }
  if (text === undefined) throw new PsyneError("INVALID_ARGUMENT", `cannot send a ${typeof value}: it is not a JSON value`);
  return { kind: Kind.Json, bytes: encoder.encode(text) };
}

/** Decodes bytes (copied out of channel memory) of the given kind. */
export function decodeValue(kind: number, bytes: Uint8Array): unknown {
  switch (kind) {
    case Kind.Undefined:
      return undefined;
    case Kind.String:
      return decoder.decode(bytes);
    case Kind.Json:
      return JSON.parse(decoder.decode(bytes));
    case Kind.ArrayBuffer:
      return bytes.slice().buffer;
    case Kind.DataView:
      return new DataView(bytes.slice().buffer);
  }
  const T = typedArrayKinds[kind - Kind.TypedArray];
  if (!T) throw new PsyneError("CHANNEL_CORRUPT", `unknown value kind ${kind}`);
  const copy = bytes.slice().buffer; // aligned for any element size
  return new T(copy, 0, Math.floor(copy.byteLength / T.BYTES_PER_ELEMENT));
}

/**
 * A frame: [u32 magic][u32 kind][f64 id][u32 tag length][u32 0][tag UTF-8][value bytes]. The id
 * is a request or task number; the tag a client id or an error flag. Every length read back is
 * checked against the message length.
 */
export function encodeFrame(magic: number, id: number, tag: string, value: Encoded): Uint8Array {
  const tagBytes = encoder.encode(tag);
  const frame = new Uint8Array(24 + tagBytes.length + value.bytes.length);
  const view = new DataView(frame.buffer);
  view.setUint32(0, magic, true);
  view.setUint32(4, value.kind, true);
  view.setFloat64(8, id, true);
  view.setUint32(16, tagBytes.length, true);
  frame.set(tagBytes, 24);
  frame.set(value.bytes, 24 + tagBytes.length);
  return frame;
}

export interface Frame {
  kind: number;
  id: number;
  tag: string;
  value: Uint8Array; // a view of the message: decode before it is released
}

export function decodeFrame(magic: number, bytes: Uint8Array): Frame | null {
  if (bytes.byteLength < 24) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== magic) return null;
  const tagLength = view.getUint32(16, true);
  if (24 + tagLength > bytes.byteLength) return null;
  return {
    kind: view.getUint32(4, true),
    id: view.getFloat64(8, true),
    tag: decoder.decode(bytes.subarray(24, 24 + tagLength)),
    value: bytes.subarray(24 + tagLength),
  };
}

/** The value kind of a frame that carries a failure: the remote side threw. */
export const FAILED_KIND = 0xffffffff;

/** Any value as text, for an error message; never throws (a getter, a Symbol, no prototype...). */
export function textOf(value: unknown): string {
  try {
    return String(value);
  } catch {}
  try {
    return Object.prototype.toString.call(value);
  } catch {
    return "a value that cannot be printed";
  }
}

/**
 * A thrown value as it travels: its name and message. Never throws, whatever was thrown: an
 * Error's name and message are read as text, anything else becomes an Error named after it.
 */
export function encodeFailure(thrown: unknown): Encoded {
  let name = "Error";
  let message: string;
  try {
    if (thrown instanceof Error) {
      name = textOf(thrown.name);
      message = textOf(thrown.message);
    } else if (typeof thrown === "object" && thrown !== null && Object.getPrototypeOf(thrown) === null) {
      message = `a value that is not an Error was thrown: an object with no prototype (${safeJson(thrown)})`;
    } else {
      message = textOf(thrown);
      if (message === "[object Object]") message = `a value that is not an Error was thrown: ${safeJson(thrown)}`;
    }
  } catch (err) {
    message = `a value that is not an Error was thrown (reading it threw: ${textOf(err)})`;
  }
  return { kind: FAILED_KIND, bytes: encoder.encode(JSON.stringify({ name, message })) };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? textOf(value);
  } catch {
    return textOf(value);
  }
}

/** What a reply or result frame carries: its value, or the remote failure as a RemoteError. */
export function frameOutcome(frame: Frame): { ok: true; value: unknown } | { ok: false; error: RemoteError } {
  if (frame.kind !== FAILED_KIND) return { ok: true, value: decodeValue(frame.kind, frame.value) };
  let failure: { name?: unknown; message?: unknown } = {};
  try {
    failure = JSON.parse(decoder.decode(frame.value));
  } catch {}
  const message = typeof failure.message === "string" ? failure.message : "the remote side failed (its error could not be read)";
  return { ok: false, error: new RemoteError(message, typeof failure.name === "string" ? failure.name : "Error") };
}
