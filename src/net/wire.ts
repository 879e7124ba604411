// The psyne wire protocol of tcp:// and unix:// channels, version 1: the one place it is defined.
//
// A connection is a byte stream between a connector (C) and a listener (L). All integers are
// little-endian. Each side first sends an 8-byte preamble, then frames.
//
//   preamble   0  4  magic "PSYN" (50 53 59 4e)
//              4  2  protocol version (1)
//              6  2  zero
//
//   frame      0  4  length   bytes of body after this 16-byte header
//              4  4  kind     one of FrameKind below
//              8  4  a        per kind (MSG: the message's type id)
//             12  4  b        per kind (MSG: its sequence number; ACK: the cumulative sequence number)
//             16     body     `length` bytes
//
// Handshake (each step has a deadline; anything unexpected closes the connection):
//   C -> L  preamble, HELLO   a = mode wanted (0..4, 255: the listener's), b = C's receive capacity
//                             (0: the same as L's); body (64 bytes): session (16), stream (16),
//                             nonce (16), flags u32 (bit 0: C holds a token), 12 zero bytes
//   L -> C  preamble, HELLO   a = 255, b = 0 (nothing about the channel before the proof);
//                             body: 16 zero bytes, 16 zero bytes, nonce (16), flags (bit 0: a token is
//                             required), zeros
//   C -> L  PROOF             body (32): HMAC-SHA256(token, "psyne/1 connector" | L.nonce | C.nonce),
//                             zeros without a token
//   L -> C  ACCEPT            a = mode, b = L's receive capacity (0: L receives nothing); body (72):
//                             session (16), stream (16), HMAC-SHA256(token, "psyne/1 listener" |
//                             C.nonce | L.nonce) or zeros (32), L's bufferSize u32 (a connector that
//                             left it out adopts it), 4 zero bytes
//        or REFUSE            a = RefuseCode, body: the reason in UTF-8 (at most 1024 bytes); then L closes
// The token never crosses the wire: each side proves it knows it by a keyed hash of the other's
// fresh nonce (compared with timingSafeEqual). A connector with a token also checks L's proof.
//
// `session` names a channel handle (random, 16 bytes): a peer that reconnects with the same session
// resumes where it was. `stream` names one outgoing sequence of messages (a BROADCAST listener has one
// per subscriber): sequence numbers count the messages of a stream from 1, modulo 2^32.
//
// After the handshake:
//   MSG   a = type id, b = seq, body = the message's bytes (length at most the receiver's capacity
//         minus the 16-byte record header; a longer frame closes the connection)
//   ACK   length 0, b = every message of the peer's stream up to this sequence number has been
//         released by the receiving consumer: the sender may free it. Sent batched, when the
//         consumer released (not when a message arrived), right after each handshake, and at close.
//   BYE   length 0: an orderly close follows.
// A sender keeps every unacknowledged message in its ring, never has more bytes of them in flight than
// the receiver's capacity, and after a reconnect sends again from the first unacknowledged one; the
// receiver drops sequence numbers of a stream it already has. A struct's type id is a hash of its name
// and field layout (defineMessage), so a peer whose definition differs gets MessageTypeError.
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

export const MAGIC = 0x4e595350; // "PSYN" read as a little-endian u32
export const VERSION = 1;
export const PREAMBLE_BYTES = 8;
export const FRAME_HEADER = 16;
export const ADOPT_MODE = 255;

export const FrameKind = { MSG: 1, ACK: 2, HELLO: 3, PROOF: 4, ACCEPT: 5, REFUSE: 6, BYE: 7 } as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

export const RefuseCode = { ROLE: 1, CONFIG: 2, AUTH: 3, VERSION: 4 } as const;

export const HELLO_BYTES = 64;
export const PROOF_BYTES = 32;
export const ACCEPT_BYTES = 72;
export const MAX_REASON_BYTES = 1024;
export const ID_BYTES = 16;

/** A fresh random id (session, stream) or nonce. */
export const randomId = (): Uint8Array => new Uint8Array(randomBytes(ID_BYTES));
export const hex = (id: Uint8Array): string => Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString("hex");

export function preamble(): Uint8Array {
  const out = new Uint8Array(PREAMBLE_BYTES);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint16(4, VERSION, true);
  return out;
}

/** A whole frame (header and body) in a buffer of its own: for the handshake and control frames. */
export function frame(kind: FrameKind, a: number, b: number, body?: Uint8Array): Uint8Array {
  const length = body?.byteLength ?? 0;
  const out = new Uint8Array(FRAME_HEADER + length);
  writeHeader(new DataView(out.buffer), 0, length, kind, a, b);
  if (body) out.set(body, FRAME_HEADER);
  return out;
}

export function writeHeader(view: DataView, at: number, length: number, kind: number, a: number, b: number): void {
  view.setUint32(at, length, true);
  view.setUint32(at + 4, kind, true);
  view.setUint32(at + 8, a >>> 0, true);
  view.setUint32(at + 12, b >>> 0, true);
}

export interface Hello {
  mode: number;
  capacity: number;
  session: Uint8Array;
  stream: Uint8Array;
  nonce: Uint8Array;
  token: boolean;
}

export function helloBody(session: Uint8Array, stream: Uint8Array, nonce: Uint8Array, token: boolean): Uint8Array {
  const body = new Uint8Array(HELLO_BYTES);
  body.set(session, 0);
  body.set(stream, 16);
  body.set(nonce, 32);
  new DataView(body.buffer).setUint32(48, token ? 1 : 0, true);
  return body;
}

export function readHello(a: number, b: number, body: Uint8Array): Hello {
  return {
    mode: a,
    capacity: b,
    session: body.slice(0, 16),
    stream: body.slice(16, 32),
    nonce: body.slice(32, 48),
    token: (new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(48, true) & 1) === 1,
  };
}

/** The keyed proof that a side knows the token, over both nonces (the verifier's first). */
export function proof(token: string, who: "connector" | "listener", first: Uint8Array, second: Uint8Array): Uint8Array {
  const hmac = createHmac("sha256", token);
  hmac.update(`psyne/${VERSION} ${who}`);
  hmac.update(first);
  hmac.update(second);
  return new Uint8Array(hmac.digest());
}

export function proofMatches(expected: Uint8Array, got: Uint8Array): boolean {
  return got.byteLength === expected.byteLength && timingSafeEqual(expected, got);
}

/** Sequence numbers are u32 and wrap: a <= b when b is at most 2^31 ahead. */
export const seqAtMost = (a: number, b: number): boolean => ((b - a) | 0) >= 0;
export const nextSeq = (seq: number): number => (seq + 1) >>> 0;
