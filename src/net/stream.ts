// tcp:// and unix:// channels (SPEC.md "Beyond one machine"): the user's handle works on local
// rings (ring.ts), and pumps move records between them and a Bun socket with the protocol of wire.ts.
//
//   SPSC       both ends send and receive: each has a send ring and a receive ring
//   MPSC       the listener receives (one receive ring fed by every connection); connectors send
//   BROADCAST  the listener sends (a BROADCAST send ring, one subscriber handle per connector);
//              connectors receive
//
// Sending: the user commits into the send ring; the send pump (Outbound) reads records without
// freeing them, frames many into one socket write, and frees them only when the peer acknowledges
// that its consumer released them; after a reconnect it rewinds and sends the rest again. Receiving:
// the receive pump (Connection) parses frames, drops sequence numbers it already has, and claims,
// copies and commits each message into the receive ring; when the user releases messages, their
// acknowledgement goes back, batched. Everything runs on the thread that opened the channel.
import type { Socket, SocketHandler, TCPSocketListener, UnixSocketListener } from "bun";
import {
  type Channel,
  ChannelMode,
  type ChannelOptions,
  type ChannelStats,
  MESSAGE_LIMIT,
  type PeerStats,
  registerTransport,
  type Transport,
  TRANSPORT_HOOKS,
  WAKE,
} from "../core/channel";
import { invalidArgument } from "../core/check";
import { debug } from "../core/debug";
import { ChannelConfigError, ChannelExistsError, ChannelRoleError, MessageTooLargeError, PsyneError } from "../core/errors";
import { layout } from "../core/layout";
import { WaitKind, type WaitOptions } from "../core/waiting";
import { checkDirectMode, checkMillis, clearStaleSocket, type Endpoint, parseEndpoint, warnIfExposed } from "./address";
import { bytesAhead, copyBytes, openLocalRing, positionAdd, positionReached, REC_HEADER, RingPort, recordSpan } from "./ring";
import { Waits } from "./waits";
import {
  ACCEPT_BYTES,
  ADOPT_MODE,
  FRAME_HEADER,
  FrameKind,
  frame,
  HELLO_BYTES,
  type Hello,
  hex,
  helloBody,
  MAGIC,
  MAX_REASON_BYTES,
  nextSeq,
  PREAMBLE_BYTES,
  preamble,
  PROOF_BYTES,
  proof,
  proofMatches,
  RefuseCode,
  randomId,
  readHello,
  seqAtMost,
  VERSION,
  writeHeader,
} from "./wire";

/** A connection that has not finished its handshake by then is closed. */
const HANDSHAKE_MS = 3000;
/** Most message frames the receive pump claims and commits at once. */
const RUN_MAX = 256;
/** A message this large goes to the socket straight from the ring, not copied into a batch. */
const DIRECT_BYTES = 32 * 1024;
/** Bytes of frames the send pump gathers into one socket write. */
const BATCH_BYTES = 128 * 1024;
/** An acknowledgement waits at most this long for more releases to share it. */
const ACK_DELAY_MS = 1;
const RECONNECT_FIRST_MS = 20;
const RECONNECT_MAX_MS = 1000;
const DEFAULT_PEER_TIMEOUT_MS = 10_000;
/** Peers gone for good that stats() still lists. */
const GONE_PEERS_KEPT = 32;
/**
 * Test-only, read by this transport alone: PSYNE_TEST_NO_RESEND=1 makes a sender carry on after a
 * reconnect without sending again what the peer had not acknowledged, so that the reconnect tests
 * can prove they detect lost messages. Never set it otherwise.
 */
const RESEND = process.env.PSYNE_TEST_NO_RESEND !== "1";
/**
 * Benchmark-only, read by this transport alone: PSYNE_BENCH_NO_ACK=1 frees what was sent as soon as
 * the socket took it and sends no acknowledgements (what a raw socket does), so bench/net.ts can
 * show what acknowledgements cost. Nothing survives a reconnect then. Never set it otherwise.
 */
const ACKS = process.env.PSYNE_BENCH_NO_ACK !== "1";
/**
 * Test-only, read by this transport alone: PSYNE_TEST_STALL_OPEN_MS=N busy-waits N ms at the start
 * of a socket's open handler, so a test can make the peer's reset land there on purpose. Never set it
 * otherwise.
 */
const STALL_OPEN_MS = Number(process.env.PSYNE_TEST_STALL_OPEN_MS ?? 0);

const modeIds: Record<ChannelMode, number> = { SPSC: 0, MPSC: 1, SPMC: 2, MPMC: 3, BROADCAST: 4 };
const modeNames = Object.keys(modeIds) as ChannelMode[];
const DIRECT_MODES = [ChannelMode.SPSC, ChannelMode.MPSC, ChannelMode.BROADCAST] as const;

type Side = "listener" | "connector";
const sends = (mode: ChannelMode, side: Side): boolean => mode === "SPSC" || (mode === "MPSC" ? side === "connector" : side === "listener");
const receives = (mode: ChannelMode, side: Side): boolean => mode === "SPSC" || (mode === "MPSC" ? side === "listener" : side === "connector");

class Peer {
  connection: Connection | null = null;
  connectedSince: number | null = null;
  awaySince: number | null = null;
  gone = false;
  /** BROADCAST listener: this subscriber's send pump. */
  outbound: Outbound | null = null;
  bytesIn = 0;
  bytesOut = 0;
  messagesIn = 0;
  messagesOut = 0;
  resends = 0;
  cancelAway: (() => void) | null = null;
  constructor(
    readonly session: string,
    public address: string,
  ) {}

  stats(): PeerStats {
    const live = this.connection;
    return {
      address: this.address,
      session: this.session,
      state: live ? "connected" : this.gone ? "gone" : "away",
      connectedSince: this.connectedSince === null ? null : new Date(this.connectedSince),
      awaySince: this.awaySince === null ? null : new Date(this.awaySince),
      bytesIn: this.bytesIn + (live?.bytesIn ?? 0),
      bytesOut: this.bytesOut + (live?.bytesOut ?? 0),
      messagesIn: this.messagesIn,
      messagesOut: this.messagesOut,
      resends: this.resends,
    };
  }
}

/**
 * One outgoing stream: a consumer handle with retained reading on the send ring, its sequence
 * numbers, and checkpoints (the sequence number and ring position at the end of each batch sent) to
 * turn a cumulative acknowledgement into a position to free up to.
 */
class Outbound {
  connection: Connection | null = null;
  peer: Peer | null = null;
  seq = 0; // the last sequence number sent
  #highest = 0; // the highest ever sent: below it, a send is a resend
  sentEnd: number; // where the last record read ends
  ackedSeq = 0; // freed up to this sequence number...
  ackedPos: number; // ...and this position
  #peerAck = 0;
  #cpSeq: number[] = [];
  #cpEnd: number[] = [];

  constructor(
    readonly port: RingPort,
    readonly transport: StreamTransport,
    readonly stream: Uint8Array,
  ) {
    this.sentEnd = this.ackedPos = port.released();
  }

  /** A connection (new, or after a reconnect) takes this stream: send again from the first unacknowledged. */
  attach(connection: Connection): void {
    this.connection = connection;
    this.#cpSeq = [];
    this.#cpEnd = [];
    if (RESEND) {
      this.port.rewind();
      this.seq = this.ackedSeq;
      this.sentEnd = this.ackedPos;
    } else if (this.sentEnd !== this.ackedPos) {
      // (test-only) what was in flight at the cut is given up as if delivered: lost
      this.ackedSeq = this.seq;
      this.#free(this.sentEnd);
    }
    this.pump();
  }

  detach(connection: Connection): void {
    if (this.connection === connection) this.connection = null;
  }

  /** The peer's consumer released every message up to `seq`. */
  onAck(seq: number): void {
    if (seqAtMost(seq, this.#peerAck) && this.#peerAck !== 0) return; // old news
    this.#peerAck = seqAtMost(seq, this.#highest) ? seq : this.#highest; // never beyond what was sent
    let end = -1;
    while (this.#cpSeq.length > 0 && seqAtMost(this.#cpSeq[0]!, this.#peerAck)) {
      this.ackedSeq = this.#cpSeq.shift()!;
      end = this.#cpEnd.shift()!;
    }
    if (end >= 0) this.#free(end);
  }

  #free(end: number): void {
    if (this.port.closed) return;
    this.port.releaseTo(end);
    this.ackedPos = end;
    this.transport.onFreed(this);
  }

  /** Records read up to `end`, the last with sequence number `seq`: freed once the peer acknowledges `seq`. */
  #checkpoint(seq: number, end: number): void {
    if (!ACKS || seqAtMost(seq, this.ackedSeq) || (this.#peerAck !== 0 && seqAtMost(seq, this.#peerAck))) {
      // only records that need no acknowledgement (skipped, dropped), or already acknowledged
      this.ackedSeq = seq;
      this.#free(end);
      return;
    }
    this.#cpSeq.push(seq);
    this.#cpEnd.push(end);
  }

  /** Sends what the ring holds, as far as the peer's capacity and the socket allow. */
  pump(): void {
    const connection = this.connection;
    if (connection === null || !connection.writable || this.port.closed) return;
    const port = this.port;
    const tail = port.tail(); // nothing is committed while this runs: the user is on this thread
    if (tail === this.sentEnd) return;
    const window = connection.peerCapacity;
    const maxMessage = window - REC_HEADER;
    const out = connection.batch();
    const view = connection.batchView!;
    const ring = port.bytes;
    const payloadBase = port.payloadBase;
    const capacity = port.capacity;
    const peer = this.peer ?? connection.peer!;
    let w = 0;
    let atEnd = false;
    let messages = 0;
    while (connection.writable) {
      if (this.sentEnd === tail) {
        atEnd = true;
        break;
      }
      // never more in flight than the receiver's ring holds (one message always goes)
      const inFlight = bytesAhead(this.ackedPos, this.sentEnd);
      if (inFlight > 0 && inFlight + recordSpan(port.lengthAt(this.sentEnd)) > window) break;
      const at = port.next();
      if (at < 0) {
        atEnd = true;
        break;
      }
      const length = port.length;
      // where it ends: right after the last one, unless skipped records lay between (then ask)
      this.sentEnd = at - payloadBase === this.sentEnd % capacity ? positionAdd(this.sentEnd, port.span) : port.end();
      if (length > maxMessage) {
        this.transport.tooLarge(length, maxMessage);
        continue; // dropped: it can never reach that peer
      }
      const seq = (this.seq = nextSeq(this.seq));
      if (seqAtMost(seq, this.#highest) && this.#highest !== 0) peer.resends++;
      else this.#highest = seq;
      messages++;
      if (w + FRAME_HEADER + length > out.length || length >= DIRECT_BYTES) {
        if (w > 0) connection.write(out.subarray(0, w), true);
        w = 0;
        if (length >= DIRECT_BYTES) {
          // a large one: its header, then the payload straight from the ring (it stays there until acknowledged)
          writeHeader(view, 0, length, FrameKind.MSG, port.type, seq);
          connection.write(out.subarray(0, FRAME_HEADER), true);
          // (without acknowledgements the record is freed at once: what the socket did not take is copied)
          connection.write(ring.subarray(at, at + length), !ACKS);
          continue;
        }
      }
      writeHeader(view, w, length, FrameKind.MSG, port.type, seq);
      copyBytes(ring, at, length, out, w + FRAME_HEADER);
      w += FRAME_HEADER + length;
    }
    if (w > 0) connection.write(out.subarray(0, w), true);
    peer.messagesOut += messages;
    if (atEnd) this.sentEnd = tail; // past any skipped records too
    this.#checkpoint(this.seq, this.sentEnd);
  }

  close(): void {
    this.connection = null;
    this.port.close();
  }
}

/** One incoming stream (a peer's Outbound): what it delivered, and what to acknowledge. */
class Inbound {
  connection: Connection | null = null;
  peer: Peer | null = null;
  known = false; // has delivered a message: later sequence numbers up to lastSeq are duplicates
  lastSeq = 0;
  lastEnd = 0; // where its last message ends in the receive ring
  marked = true; // lastSeq/lastEnd are checkpointed
  releasedSeq = 0; // the consumer released everything up to here
  hasReleased = false;
  ackedSeq = 0; // the last acknowledgement sent
  ackedPos = 0; // the receive ring's released position then
  cpSeq: number[] = [];
  cpEnd: number[] = [];

  mark(): void {
    if (this.marked) return;
    this.marked = true;
    this.cpSeq.push(this.lastSeq);
    this.cpEnd.push(this.lastEnd);
  }

  /** The consumer released up to `released`: what can be acknowledged now? */
  advance(released: number): void {
    while (this.cpSeq.length > 0 && positionReached(released, this.cpEnd[0]!)) {
      this.releasedSeq = this.cpSeq.shift()!;
      this.cpEnd.shift();
      this.hasReleased = true;
    }
  }
}

interface Partial {
  length: number;
  type: number;
  seq: number;
  body: Uint8Array;
  filled: number;
}

type HandshakeState = "preamble" | "hello" | "proof" | "accept" | "open" | "closed";

/** One socket: its handshake, the receive pump, and the writes of the send pump. */
class Connection {
  state: HandshakeState = "preamble";
  peer: Peer | null = null;
  outbound: Outbound | null = null;
  inbound: Inbound | null = null;
  /** Bytes of the peer's receive ring: the most this side may have in flight to it. */
  peerCapacity = 0;
  bytesIn = 0;
  bytesOut = 0;
  duplicates = 0;
  bye = false;
  readonly nonce = randomId();
  #peerHello: Hello | null = null;
  #handshake: Uint8Array = new Uint8Array(0);
  #cancelDeadline: (() => void) | null;
  // the receive pump
  #carry = new Uint8Array(FRAME_HEADER);
  #carryView = new DataView(this.#carry.buffer);
  #carryLength = 0;
  #partial: Partial | null = null;
  #partialBuffer: Uint8Array | null = null;
  #blocked: { type: number; seq: number; body: Uint8Array } | null = null;
  #pending: Uint8Array[] = [];
  #woken = false; // this chunk's first message woke the consumer
  // the send side
  #queue: Uint8Array[] = [];
  #batch: Uint8Array | null = null;
  batchView: DataView | null = null;

  constructor(
    readonly socket: Socket<Connection>,
    readonly transport: StreamTransport,
    readonly side: Side,
    readonly address: string,
  ) {
    const deadline = unrefTimeout(() => this.fail("handshake", `no handshake within ${HANDSHAKE_MS} ms`), HANDSHAKE_MS);
    this.#cancelDeadline = () => clearTimeout(deadline);
  }

  get writable(): boolean {
    return this.state === "open" && this.#queue.length === 0;
  }

  batch(): Uint8Array {
    if (this.#batch === null) {
      this.#batch = new Uint8Array(BATCH_BYTES);
      this.batchView = new DataView(this.#batch.buffer);
    }
    return this.#batch;
  }

  /** Writes what the kernel takes now and queues the rest (copied if `data` will be reused). */
  write(data: Uint8Array, reused: boolean): void {
    if (this.state === "closed") return;
    if (this.#queue.length > 0) {
      this.#queue.push(reused ? data.slice() : data);
      return;
    }
    const written = this.socket.write(data, 0, data.byteLength);
    if (written < 0) return; // closing: the close handler follows
    this.bytesOut += written;
    if (written < data.byteLength) this.#queue.push(reused ? data.slice(written) : data.subarray(written));
  }

  onDrain(): void {
    while (this.#queue.length > 0 && this.state !== "closed") {
      const data = this.#queue[0]!;
      const written = this.socket.write(data, 0, data.byteLength);
      if (written < 0) return;
      this.bytesOut += written;
      if (written < data.byteLength) {
        this.#queue[0] = data.subarray(written);
        return;
      }
      this.#queue.shift();
    }
    this.outbound?.pump();
    if (!ACKS && this.outbound) this.transport.onFreed(this.outbound);
  }

  /**
   * Closes this connection for bad input or a broken promise of the peer (reset at once), or after
   * a refusal (`graceful`: what was written, the reason, reaches the peer first); the channel carries on.
   */
  fail(reason: string, detail: string, graceful = false): -1 {
    if (this.state === "closed") return -1;
    debug(this.transport.uri, `closing the connection ${this.address}: ${detail}`);
    this.transport.countError(reason);
    if (graceful) this.socket.end();
    else this.socket.terminate();
    this.onClose();
    return -1;
  }

  onClose(): void {
    if (this.state === "closed") return;
    const wasOpen = this.state === "open";
    this.state = "closed";
    this.#cancelDeadline?.();
    this.#queue = [];
    this.#partial = null;
    this.#blocked = null;
    this.#pending = [];
    this.transport.connectionClosed(this, wasOpen);
  }

  onData(chunk: Uint8Array): void {
    this.bytesIn += chunk.byteLength;
    if (this.state === "open") {
      if (this.#blocked !== null || this.#pending.length > 0) this.#pending.push(chunk);
      else this.#consume(chunk);
    } else if (this.state !== "closed") {
      this.#handshakeData(chunk);
    }
  }

  // ---- handshake ---------------------------------------------------------------------------------

  /** The connector speaks first. */
  start(hello: Uint8Array): void {
    this.write(concat(preamble(), hello), false);
  }

  #handshakeData(chunk: Uint8Array): void {
    let input = this.#handshake.byteLength > 0 ? concat(this.#handshake, chunk) : chunk;
    for (;;) {
      if (this.state === "preamble") {
        if (input.byteLength < PREAMBLE_BYTES) break;
        const view = new DataView(input.buffer, input.byteOffset, PREAMBLE_BYTES);
        const magic = view.getUint32(0, true);
        const version = view.getUint16(4, true);
        if (magic !== MAGIC) {
          if (this.side === "connector") this.transport.fatal(new PsyneError("PROTOCOL", `${this.transport.uri}: ${this.address} is not a psyne channel (it sent ${hex(input.subarray(0, 8))})`));
          this.fail("protocol", `not a psyne peer: first bytes ${hex(input.subarray(0, 8))}`);
          return;
        }
        if (version !== VERSION) {
          if (this.side === "listener") {
            this.write(concat(preamble(), frame(FrameKind.REFUSE, RefuseCode.VERSION, 0, utf8(`the listener speaks psyne protocol version ${VERSION}, the connector ${version}`))), false);
          } else {
            this.transport.fatal(new PsyneError("PROTOCOL", `${this.transport.uri}: the listener speaks psyne protocol version ${version}, this process ${VERSION}`));
          }
          this.fail("version", `protocol version ${version}, not ${VERSION}`, this.side === "listener");
          return;
        }
        input = input.subarray(PREAMBLE_BYTES);
        this.state = "hello";
        continue;
      }
      if (input.byteLength < FRAME_HEADER) break;
      const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
      const length = view.getUint32(0, true);
      const kind = view.getUint32(4, true);
      const expected = this.#expectedLength(kind);
      if (expected < 0 || (kind === FrameKind.REFUSE ? length > MAX_REASON_BYTES : length !== expected)) {
        this.fail("protocol", `handshake: unexpected frame kind ${kind} of ${length} bytes in state ${this.state}`);
        return;
      }
      if (input.byteLength < FRAME_HEADER + length) break;
      const body = input.slice(FRAME_HEADER, FRAME_HEADER + length);
      const a = view.getUint32(8, true);
      const b = view.getUint32(12, true);
      input = input.subarray(FRAME_HEADER + length);
      this.#handshakeFrame(kind, a, b, body);
      if (this.state === "open") {
        this.#handshake = new Uint8Array(0);
        if (input.byteLength > 0) this.#consume(input);
        return;
      }
      if (this.state === "closed") return;
    }
    if (input.byteLength > 4096) {
      this.fail("protocol", "handshake: too many bytes");
      return;
    }
    this.#handshake = input.byteLength > 0 ? input.slice() : new Uint8Array(0);
  }

  /** The body length of the handshake frame expected now, or -1 if `kind` is not it. */
  #expectedLength(kind: number): number {
    if (this.side === "listener") {
      if (this.state === "hello" && kind === FrameKind.HELLO) return HELLO_BYTES;
      if (this.state === "proof" && kind === FrameKind.PROOF) return PROOF_BYTES;
      return -1;
    }
    if (this.state === "hello" && kind === FrameKind.HELLO) return HELLO_BYTES;
    if (this.state === "hello" && kind === FrameKind.REFUSE) return 0; // a version refusal
    if (this.state === "accept" && kind === FrameKind.ACCEPT) return ACCEPT_BYTES;
    if (this.state === "accept" && kind === FrameKind.REFUSE) return 0;
    return -1;
  }

  #handshakeFrame(kind: number, a: number, b: number, body: Uint8Array): void {
    const t = this.transport;
    if (kind === FrameKind.REFUSE) {
      t.refused(a, new TextDecoder().decode(body));
      this.fail("refused", `refused by the listener: ${new TextDecoder().decode(body)}`);
      return;
    }
    if (this.side === "listener") {
      if (kind === FrameKind.HELLO) {
        this.#peerHello = readHello(a, b, body);
        this.write(concat(preamble(), frame(FrameKind.HELLO, ADOPT_MODE, 0, helloBody(new Uint8Array(16), new Uint8Array(16), this.nonce, t.token !== null))), false);
        this.state = "proof";
      } else {
        t.admit(this, this.#peerHello!, body);
      }
      return;
    }
    if (kind === FrameKind.HELLO) {
      const hello = readHello(a, b, body);
      this.#peerHello = hello;
      const token = t.token;
      this.write(frame(FrameKind.PROOF, 0, 0, token === null ? new Uint8Array(PROOF_BYTES) : proof(token, "connector", hello.nonce, this.nonce)), false);
      this.state = "accept";
      return;
    }
    // ACCEPT
    t.accepted(this, a, b, body, this.#peerHello!.nonce);
  }

  /** The handshake is done: frames from now on. */
  opened(): void {
    this.state = "open";
    this.#cancelDeadline?.();
    this.#cancelDeadline = null;
  }

  // ---- the receive pump ----------------------------------------------------------------------------

  #consume(chunk: Uint8Array): void {
    this.#woken = false;
    try {
      this.#consumeFrames(chunk);
    } finally {
      this.inbound?.mark();
    }
  }

  #consumeFrames(chunk: Uint8Array): void {
    const n = chunk.byteLength;
    let p = 0;
    const partial = this.#partial;
    if (partial !== null) {
      const take = Math.min(partial.length - partial.filled, n);
      partial.body.set(chunk.subarray(0, take), partial.filled);
      partial.filled += take;
      p = take;
      if (partial.filled < partial.length) return;
      this.#partial = null;
      const body = partial.body.subarray(0, partial.length);
      if (!this.#deliver(partial.type, partial.seq, body, 0, partial.length)) {
        this.#block(partial.type, partial.seq, body, chunk.subarray(p));
        return;
      }
    }
    if (this.#carryLength > 0) {
      const take = Math.min(FRAME_HEADER - this.#carryLength, n - p);
      this.#carry.set(chunk.subarray(p, p + take), this.#carryLength);
      this.#carryLength += take;
      p += take;
      if (this.#carryLength < FRAME_HEADER) return;
      this.#carryLength = 0;
      p = this.#frame(this.#carryView, 0, chunk, p);
      if (p < 0) return;
    }
    const view = new DataView(chunk.buffer, chunk.byteOffset, n);
    const receiving = this.inbound !== null;
    while (n - p >= FRAME_HEADER) {
      if (receiving && view.getUint32(p + 4, true) === FrameKind.MSG) {
        const next = this.#run(view, chunk, p);
        if (next > 0) {
          p = next;
          continue;
        }
      }
      p = this.#frame(view, p, chunk, p + FRAME_HEADER);
      if (p < 0) return;
    }
    if (p < n) {
      this.#carry.set(chunk.subarray(p), 0);
      this.#carryLength = n - p;
    }
  }

  /**
   * The frame whose header is at `view[h]` and whose body starts at `chunk[b]`. Returns where the
   * next frame starts, or -1 when this chunk is done with (a frame continues in the next chunk, the
   * receive ring is full, or the connection was closed).
   */
  #frame(view: DataView, h: number, chunk: Uint8Array, b: number): number {
    const length = view.getUint32(h, true);
    const kind = view.getUint32(h + 4, true);
    const a = view.getUint32(h + 8, true);
    const s = view.getUint32(h + 12, true);
    if (kind === FrameKind.MSG) {
      if (this.inbound === null) return this.fail("protocol", `a message frame, but this end receives nothing in ${this.transport.mode}`);
      const max = this.transport.maxMessage;
      if (length > max) return this.fail("protocol", `a message frame of ${length} bytes, more than this channel's largest message (${max} bytes)`);
      const end = b + length;
      if (end > chunk.byteLength) {
        // the rest comes in later chunks: gather it (at most the channel's largest message, checked above)
        if (this.#partialBuffer === null || this.#partialBuffer.byteLength < length) this.#partialBuffer = new Uint8Array(length);
        const body = this.#partialBuffer;
        body.set(chunk.subarray(b), 0);
        this.#partial = { length, type: a, seq: s, body, filled: chunk.byteLength - b };
        return -1;
      }
      if (!this.#deliver(a, s, chunk, b, length)) {
        this.#block(a, s, chunk.subarray(b, end), chunk.subarray(end));
        return -1;
      }
      return end;
    }
    if (length !== 0) return this.fail("protocol", `a frame of kind ${kind} with ${length} bytes of body`);
    if (kind === FrameKind.ACK) {
      if (this.outbound === null) return this.fail("protocol", "an acknowledgement, but this end sends nothing to that peer");
      this.outbound.onAck(s);
      return b;
    }
    if (kind === FrameKind.BYE) {
      this.bye = true; // the peer closed its channel: it will not be back
      return b;
    }
    return this.fail("protocol", `unknown frame kind ${kind}`);
  }

  /**
   * The fast path for a run of whole message frames in this chunk with the same length and type
   * and consecutive new sequence numbers (what sendBatch makes): one claim and one commit for them
   * all. Returns where the next frame starts, or 0 to take the frame at `p` the careful way.
   */
  #run(view: DataView, chunk: Uint8Array, p: number): number {
    const length = view.getUint32(p, true);
    const stride = FRAME_HEADER + length;
    const n = chunk.byteLength;
    if (p + 2 * stride > n || length > this.transport.maxMessage) return 0;
    const type = view.getUint32(p + 8, true);
    const seq = view.getUint32(p + 12, true);
    const inbound = this.inbound!;
    if (inbound.known && seq !== nextSeq(inbound.lastSeq)) return 0; // a duplicate or a gap
    let count = 1;
    for (let q = p + stride; count < RUN_MAX && q + stride <= n; q += stride, count++) {
      if (view.getUint32(q, true) !== length || view.getUint32(q + 4, true) !== FrameKind.MSG) break;
      if (view.getUint32(q + 8, true) !== type || view.getUint32(q + 12, true) !== ((seq + count) >>> 0)) break;
    }
    if (count < 2) return 0;
    const t = this.transport;
    const port = t.rxPort!;
    const got = port.claimBatch(count, length, type);
    if (got === 0) return 0;
    const ring = port.bytes;
    const first = port.claimedAt;
    const span = port.claimedSpan;
    for (let i = 0; i < got; i++) copyBytes(chunk, p + i * stride + FRAME_HEADER, length, ring, first + i * span);
    port.commit(first);
    if (!this.#woken) {
      this.#woken = true;
      t.delivered();
    }
    inbound.known = true;
    inbound.lastSeq = (seq + got - 1) >>> 0;
    inbound.lastEnd = port.committedEnd;
    inbound.marked = false;
    this.peer!.messagesIn += got;
    return p + got * stride;
  }

  /** Into the receive ring, unless the stream delivered it already; false when the ring is full. */
  #deliver(type: number, seq: number, source: Uint8Array, from: number, length: number): boolean {
    const inbound = this.inbound!;
    if (inbound.known && seqAtMost(seq, inbound.lastSeq)) {
      this.duplicates++;
      return true;
    }
    const t = this.transport;
    const port = t.rxPort!;
    if (!port.write(type, source, from, length)) return false;
    if (!this.#woken) {
      // a parked recv() takes the first message now and stops waiting in the kernel, so the commits
      // of the rest of this chunk wake no waiter thread
      this.#woken = true;
      t.delivered();
    }
    if (inbound.known && seq !== nextSeq(inbound.lastSeq)) debug(t.uri, `stream from ${this.address}: sequence ${seq} after ${inbound.lastSeq} (messages missing)`);
    inbound.known = true;
    inbound.lastSeq = seq;
    inbound.lastEnd = port.committedEnd;
    inbound.marked = false;
    this.peer!.messagesIn++;
    return true;
  }

  /** The receive ring is full: hold this frame and what follows, stop reading the socket. */
  #block(type: number, seq: number, body: Uint8Array, rest: Uint8Array): void {
    this.#blocked = { type, seq, body };
    if (rest.byteLength > 0) this.#pending.push(rest);
    this.socket.pause();
    this.transport.blocked.add(this);
  }

  /** The consumer freed space: go on where the ring was full. */
  unblock(): void {
    const blocked = this.#blocked;
    if (blocked === null || this.state !== "open") return;
    this.#woken = false;
    const delivered = this.#deliver(blocked.type, blocked.seq, blocked.body, 0, blocked.body.byteLength);
    if (!delivered) return;
    this.inbound?.mark();
    this.#blocked = null;
    while (this.#pending.length > 0 && this.#blocked === null && this.state === "open") this.#consume(this.#pending.shift()!);
    if (this.#blocked === null) {
      this.transport.blocked.delete(this);
      if (this.state === "open") this.socket.resume();
    }
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

const utf8 = (text: string): Uint8Array => {
  const bytes = new TextEncoder().encode(text);
  return bytes.byteLength > MAX_REASON_BYTES ? bytes.subarray(0, MAX_REASON_BYTES) : bytes;
};

/** A timer that does not keep the process alive (the transport's own; waiting calls hold the process). */
function unrefTimeout(fn: () => void, ms: number): ReturnType<typeof setTimeout> {
  const timer = setTimeout(fn, ms);
  timer.unref();
  return timer;
}

export class StreamTransport implements Transport {
  readonly uri: string;
  readonly token: string | null;
  readonly endpoint: Endpoint;
  readonly side: Side;
  readonly blocked = new Set<Connection>();
  rxPort: RingPort | null = null;
  #session = randomId();
  #stream = randomId(); // the id of this end's outgoing stream (SPSC, MPSC connector)
  #options: ChannelOptions;
  #mode: ChannelMode | null;
  #asked: ChannelMode | undefined;
  #bufferSize: number | null;
  #peerTimeout: number;
  #reconnect: boolean;
  #tx: Channel | null = null;
  #rx: Channel | null = null;
  #outbound: Outbound | null = null; // SPSC, MPSC connector
  #inbounds = new Map<string, Inbound>();
  #peers = new Map<string, Peer>();
  #gone: Peer[] = [];
  #connections = new Set<Connection>();
  #listener: TCPSocketListener<Connection> | UnixSocketListener<Connection> | null = null;
  #listening = "";
  #closed = false;
  #failure: PsyneError | null = null; // a refusal or a broken connection for good: ready(), flush() and sends throw it
  #failureStopsReceiving = false;
  #tooLarge: PsyneError | null = null;
  #refusedCount = 0;
  #errors: Record<string, number> = {};
  #connecting = false;
  #retryTimer: ReturnType<typeof setTimeout> | null = null;
  #backoff = RECONNECT_FIRST_MS;
  #readyWaits = new Waits();
  #flushWaits = new Waits();
  #pumpScheduled = false;
  #releaseScheduled = false;
  #ackTimer: ReturnType<typeof setTimeout> | null = null;
  #ackBytes = 0;
  #messageLimit = Number.POSITIVE_INFINITY; // the smallest peer's largest message

  constructor(scheme: "tcp" | "unix", uri: string, address: string, options: ChannelOptions) {
    this.uri = uri;
    this.#options = options;
    this.endpoint = parseEndpoint(scheme, uri, address, options);
    this.side = this.endpoint.listen ? "listener" : "connector";
    this.#asked = checkDirectMode(uri, options.mode, DIRECT_MODES);
    const auth = options.auth;
    if (auth !== undefined && (typeof auth !== "object" || auth === null || typeof auth.token !== "string" || auth.token === ""))
      throw invalidArgument("auth", "{ token: a non-empty string }", auth);
    this.token = auth?.token ?? null;
    if (options.tls !== undefined && (typeof options.tls !== "object" || options.tls === null)) throw invalidArgument("tls", "Bun's TLS options { key, cert, ca, ... }", options.tls);
    if (options.reconnect !== undefined && typeof options.reconnect !== "boolean") throw invalidArgument("reconnect", "true or false", options.reconnect);
    this.#reconnect = options.reconnect ?? true;
    this.#peerTimeout = checkMillis(options.peerTimeout, "peerTimeout", DEFAULT_PEER_TIMEOUT_MS);
    const role = options.role;
    if (role !== undefined && role !== "producer" && role !== "consumer") throw invalidArgument("role", '"producer" or "consumer"', role);
    // a listener knows its channel at once; a connector that leaves out mode or size learns them in the handshake
    this.#mode = this.#asked ?? (this.side === "listener" ? ChannelMode.SPSC : null);
    const size = options.bufferSize;
    this.#bufferSize = size === undefined ? (this.side === "listener" ? layout.DEFAULT_CAPACITY : null) : size;
    if (this.#mode !== null && role !== undefined) this.#checkRole(this.#mode, role);
    if (this.#mode !== null && this.#bufferSize !== null) this.#openRings(this.#mode, this.#bufferSize);
    try {
      if (this.side === "listener") this.#listen();
      else this.#connect();
    } catch (error) {
      this.close();
      throw error;
    }
  }

  get mode(): ChannelMode {
    return this.#mode ?? this.#asked ?? ChannelMode.SPSC;
  }
  get bufferSize(): number {
    return this.#bufferSize ?? layout.DEFAULT_CAPACITY;
  }
  get closed(): boolean {
    return this.#closed;
  }
  /** The largest message this end's receive ring takes. */
  get maxMessage(): number {
    return (this.rxPort?.capacity ?? 0) - REC_HEADER;
  }

  #checkRole(mode: ChannelMode, role: "producer" | "consumer"): void {
    if (role === "producer" ? sends(mode, this.side) : receives(mode, this.side)) return;
    throw new ChannelRoleError(`${this.uri}: a ${mode} ${this.side} ${role === "producer" ? "receives only" : "sends only"}; it cannot take the ${role} role`);
  }

  #openRings(mode: ChannelMode, bufferSize: number): void {
    const tag = `${this.endpoint.scheme}-${this.endpoint.display.replace(/^\0/, "@")}`;
    if (sends(mode, this.side)) {
      const tx = openLocalRing(this.uri, `${tag}.tx`, bufferSize, mode === "BROADCAST" ? ChannelMode.BROADCAST : ChannelMode.SPSC, "producer");
      this.#tx = tx;
      tx[TRANSPORT_HOOKS](this.#afterSend, null);
      if (mode !== "BROADCAST") this.#outbound = new Outbound(new RingPort(tx, "consumer"), this, this.#stream);
    }
    if (receives(mode, this.side)) {
      const rx = openLocalRing(this.uri, `${tag}.rx`, bufferSize, ChannelMode.SPSC, "consumer");
      this.#rx = rx;
      rx[TRANSPORT_HOOKS](null, this.#afterRelease);
      this.rxPort = new RingPort(rx, "producer");
    }
    this.#bufferSize = (this.#tx ?? this.#rx)!.bufferSize;
    this.#ackBytes = this.#bufferSize / 4;
  }

  // ---- the Transport interface -----------------------------------------------------------------

  sender(): Channel {
    if (this.#tx !== null && this.#failure === null && this.#tooLarge === null) return this.#tx;
    this.#throwIfFailed(true);
    if (this.#tx !== null) return this.#tx;
    if (this.#closed) throw new PsyneError("CHANNEL_CLOSED", `channel ${this.uri} is closed`);
    if (this.#mode !== null && !sends(this.#mode, this.side))
      throw new ChannelRoleError(`${this.uri}: a ${this.#mode} ${this.side} only receives (${this.#mode === "MPSC" ? "its connectors send" : "its listener sends"})`);
    throw new PsyneError("NOT_READY", `${this.uri}: this connector learns the channel's mode and size from the listener: await channel.ready() before sending`);
  }

  receiver(): Channel {
    if (this.#rx !== null && (this.#failure === null || !this.#failureStopsReceiving)) return this.#rx;
    if (this.#failure !== null && this.#failureStopsReceiving) throw this.#failure;
    if (this.#closed) throw new PsyneError("CHANNEL_CLOSED", `channel ${this.uri} is closed`);
    if (this.#mode !== null && !receives(this.#mode, this.side))
      throw new ChannelRoleError(`${this.uri}: a ${this.#mode} ${this.side} only sends (${this.#mode === "MPSC" ? "its listener receives" : "its connectors receive"})`);
    throw new PsyneError("NOT_READY", `${this.uri}: this connector learns the channel's mode and size from the listener: await channel.ready() before receiving`);
  }

  #throwIfFailed(sending: boolean): void {
    if (this.#failure !== null) throw this.#failure;
    if (sending && this.#tooLarge !== null) {
      const error = this.#tooLarge;
      this.#tooLarge = null;
      throw error;
    }
  }

  /** Connected (connector), or has a peer (listener). */
  #isReady(): boolean {
    for (const c of this.#connections) if (c.state === "open") return true;
    return false;
  }

  ready(options: WaitOptions): Promise<void> {
    return this.#wait(this.#readyWaits, () => this.#isReady(), options, "ready()", () =>
      this.side === "listener" ? "no connector completed the handshake yet" : `not connected to ${this.endpoint.display} yet`,
    );
  }

  /** Every message committed so far is acknowledged by its peers (BROADCAST: every subscriber not gone). */
  flush(options: WaitOptions): Promise<void> {
    if (this.#tx === null) return this.#failure ? Promise.reject(this.#failure) : Promise.resolve();
    const outbounds = this.#outbounds();
    if (outbounds.length === 0) return Promise.resolve(); // BROADCAST with no subscriber: nothing is kept
    const target = outbounds[0]!.port.tail();
    // (without acknowledgements, a benchmark's mode: once the socket took it all)
    const done = () => this.#outbounds().every((o) => positionReached(o.ackedPos, target) && (ACKS || o.connection === null || o.connection.writable));
    return this.#wait(this.#flushWaits, done, options, "flush()", () => {
      const left = this.#outbounds().reduce((most, o) => Math.max(most, bytesAhead(o.ackedPos, target)), 0);
      return `the peer has not acknowledged the last ${left} bytes`;
    });
  }

  #outbounds(): Outbound[] {
    if (this.#outbound) return [this.#outbound];
    const list: Outbound[] = [];
    for (const peer of this.#peers.values()) if (peer.outbound) list.push(peer.outbound);
    return list;
  }

  #wait(waits: Waits, done: () => boolean, options: WaitOptions, what: string, why: () => string): Promise<void> {
    try {
      this.#throwIfFailed(what === "flush()");
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.#closed) return Promise.reject(new PsyneError("CHANNEL_CLOSED", `channel ${this.uri} is closed`));
    return waits.until(done, options, () => `${what} of ${this.uri} timed out after ${options.timeout} ms: ${why()}`);
  }

  #rejectAll(error: PsyneError): void {
    this.#readyWaits.rejectAll(error);
    this.#flushWaits.rejectAll(error);
  }

  stats(): ChannelStats {
    const tx = this.#tx?.stats();
    const rx = this.#rx?.stats();
    const peers = [...this.#peers.values(), ...this.#gone].map((p) => p.stats());
    return {
      mode: this.mode,
      capacity: this.bufferSize,
      bytesInUse: (tx?.bytesInUse ?? 0) + (rx?.bytesInUse ?? 0),
      messagesSent: tx?.messagesSent ?? 0,
      bytesSent: tx?.bytesSent ?? 0,
      messagesReceived: rx?.messagesReceived ?? 0,
      bytesReceived: rx?.bytesReceived ?? 0,
      fullEvents: (tx?.fullEvents ?? 0) + (rx?.fullEvents ?? 0),
      processes: [],
      ...(this.side === "listener" ? { listening: this.#listening } : {}),
      peers,
      refused: this.#refusedCount,
      errors: { ...this.#errors },
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.rxPort !== null && !this.rxPort.closed) this.#acknowledge(true, true); // the last acknowledgements, the message in hand too
    for (const connection of [...this.#connections]) {
      if (connection.state === "open") connection.write(frame(FrameKind.BYE, 0, 0), false);
      connection.state = "closed";
      connection.socket.end();
    }
    this.#connections.clear();
    this.#listener?.stop(true);
    this.#listener = null;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (this.#ackTimer) clearTimeout(this.#ackTimer);
    for (const peer of this.#peers.values()) peer.cancelAway?.();
    this.#rejectAll(new PsyneError("CHANNEL_CLOSED", `channel ${this.uri} was closed while waiting`));
    this.#outbound?.close();
    for (const peer of this.#peers.values()) peer.outbound?.close();
    this.rxPort?.close();
    this.#tx?.close();
    this.#rx?.close();
    debug(this.uri, "closed");
  }

  // ---- hooks from the local rings ---------------------------------------------------------------

  /** The user published into the send ring: pump soon (once per microtask, whatever the number of sends). */
  #afterSend = (): void => {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    queueMicrotask(this.#pumpAll);
  };

  #pumpAll = (): void => {
    this.#pumpScheduled = false;
    if (this.#closed) return;
    try {
      if (this.#outbound) this.#outbound.pump();
      else for (const peer of this.#peers.values()) peer.outbound?.pump();
    } catch (error) {
      debug(this.uri, `send pump: ${(error as Error).message}`);
    }
  };

  /** The user may have released messages: acknowledge them, and go on where the receive ring was full. */
  #afterRelease = (): void => {
    if (this.#releaseScheduled) return;
    this.#releaseScheduled = true;
    queueMicrotask(this.#released);
  };

  #released = (): void => {
    this.#releaseScheduled = false;
    if (this.#closed || this.rxPort === null) return;
    try {
      if (this.blocked.size > 0) for (const connection of [...this.blocked]) connection.unblock();
      this.#acknowledge(false);
    } catch (error) {
      debug(this.uri, `receive pump: ${(error as Error).message}`);
    }
  };

  /**
   * Sends each stream the acknowledgement of what the consumer released: at once when a quarter of
   * the ring was released since the last one (or `now`), else within ACK_DELAY_MS, so many releases
   * share one.
   */
  #acknowledge(now: boolean, closing = false): void {
    if (!ACKS) return;
    if (this.#ackTimer !== null && now) {
      clearTimeout(this.#ackTimer);
      this.#ackTimer = null;
    }
    const released = closing ? this.rxPort!.taken() : this.rxPort!.released();
    let later = false;
    for (const inbound of this.#inbounds.values()) {
      inbound.advance(released);
      const connection = inbound.connection;
      if (!inbound.hasReleased || inbound.releasedSeq === inbound.ackedSeq || connection === null || connection.state !== "open") continue;
      if (now || bytesAhead(inbound.ackedPos, released) >= this.#ackBytes) {
        connection.write(frame(FrameKind.ACK, 0, inbound.releasedSeq), false);
        inbound.ackedSeq = inbound.releasedSeq;
        inbound.ackedPos = released;
      } else {
        later = true;
      }
    }
    if (later && this.#ackTimer === null) {
      this.#ackTimer = unrefTimeout(() => {
        this.#ackTimer = null;
        if (!this.#closed && this.rxPort !== null) this.#acknowledge(true);
      }, ACK_DELAY_MS);
    }
  }

  /** Messages arrived in the receive ring: a parked recv() takes them now. */
  delivered(): void {
    this.#rx?.[WAKE](WaitKind.Data);
  }

  /** An Outbound freed records: flushes may be done, and there may be room to send more. */
  onFreed(outbound: Outbound): void {
    this.#tx?.[WAKE](WaitKind.Space);
    this.#flushWaits.check();
    if (outbound.connection !== null) this.#afterSend(); // room to send more: pump soon
  }

  /** A record too large for the peer's ring was dropped: the next send or flush throws this. */
  tooLarge(length: number, maxMessage: number): void {
    debug(this.uri, `dropped a ${length}-byte message: the peer's ring takes at most ${maxMessage} bytes`);
    this.#tooLarge = new MessageTooLargeError(
      `a message of ${length} bytes can never reach ${this.uri}'s peer: its ring takes messages of at most ${maxMessage} bytes (it was dropped)`,
      length,
      maxMessage,
    );
    this.#flushWaits.rejectAll(this.#tooLarge);
  }

  countError(reason: string): void {
    this.#errors[reason] = (this.#errors[reason] ?? 0) + 1;
  }

  /** A failure that no reconnect will mend (a refusal, auth, a protocol mismatch). */
  fatal(error: PsyneError, stopsReceiving = true): void {
    if (this.#failure !== null) return;
    debug(this.uri, error.message);
    this.#failure = error;
    this.#failureStopsReceiving = stopsReceiving;
    this.#rejectAll(error);
  }

  // ---- sockets ----------------------------------------------------------------------------------

  /** The peer's address, or null once the peer has reset the connection (Bun has no address then). */
  socketAddress(socket: Socket<Connection>): string | null {
    if (this.endpoint.scheme === "unix") return this.endpoint.display;
    const host = socket.remoteAddress;
    if (!host) return null;
    return `${host.includes(":") ? `[${host}]` : host}:${socket.remotePort}`;
  }

  // (Bun's typings tie the handler type to binaryType "buffer"; these get plain Uint8Arrays)
  #handlers(): SocketHandler<Connection> {
    const guard = (socket: Socket<Connection>, what: string, fn: (c: Connection) => void) => {
      const connection = socket.data as Connection | undefined;
      if (!connection) return;
      try {
        fn(connection);
      } catch (error) {
        // a bug or a failing ring must not take the process down: drop this connection
        connection.fail("internal", `${what}: ${(error as Error).stack ?? error}`);
      }
    };
    const handlers: SocketHandler<Connection, "uint8array"> = {
      binaryType: "uint8array",
      open: (socket) => {
        if (STALL_OPEN_MS > 0) for (const until = performance.now() + STALL_OPEN_MS; performance.now() < until; );
        socket.unref();
        if (this.#closed) {
          socket.terminate();
          return;
        }
        // a peer that reset the connection before this handler ran leaves a socket with no remote
        // address: drop it here, for no close handler will know it (and a connector must try again)
        const address = this.socketAddress(socket);
        if (address === null) {
          debug(this.uri, "a connection was reset before it opened");
          socket.terminate();
          if (this.side === "connector") {
            this.#connecting = false;
            this.#retry(`the connection to ${this.endpoint.display} was reset as it opened`);
          }
          return;
        }
        const tls = this.#options.tls;
        if (this.side === "connector" && tls && tls.rejectUnauthorized !== false && !socket.authorized) {
          const why = socket.getAuthorizationError()?.message ?? "not authorized";
          this.fatal(new PsyneError("AUTH_FAILED", `${this.uri}: the listener's TLS certificate was not accepted: ${why}`));
          socket.terminate();
          return;
        }
        const connection = new Connection(socket, this, this.side, address);
        socket.data = connection;
        this.#connections.add(connection);
        if (this.side === "connector") connection.start(this.#helloFrame(connection.nonce));
      },
      data: (socket, chunk) => guard(socket, "data", (c) => c.onData(chunk)),
      drain: (socket) => guard(socket, "drain", (c) => c.onDrain()),
      close: (socket) => guard(socket, "close", (c) => c.onClose()),
      end: (socket) => {
        socket.end();
      },
      error: (socket, error) => debug(this.uri, `socket ${(socket.data as Connection | undefined)?.address ?? ""}: ${error?.message ?? error}`),
      connectError: () => {}, // the promise of Bun.connect reports it
    };
    return handlers as unknown as SocketHandler<Connection>;
  }

  #listen(): void {
    const e = this.endpoint;
    const tls = this.#options.tls as Parameters<typeof Bun.listen>[0]["tls"];
    try {
      if (e.scheme === "unix") {
        clearStaleSocket(this.uri, e.unix);
        const permissions = this.#options.permissions ?? 0o600;
        if (typeof permissions !== "number" || !Number.isInteger(permissions) || permissions < 0 || permissions > 0o777)
          throw invalidArgument("permissions", "a file mode from 0 to 0o777", permissions);
        // Bun.listen has no mode option: the umask decides the socket file's mode (restored at once)
        const umask = process.umask(0o777 & ~permissions);
        try {
          this.#listener = Bun.listen<Connection>({ unix: e.unix, socket: this.#handlers(), ...(tls ? { tls } : {}) });
        } finally {
          process.umask(umask);
        }
        this.#listening = e.display;
      } else {
        const listener = Bun.listen<Connection>({ hostname: e.hostname, port: e.port, exclusive: true, socket: this.#handlers(), ...(tls ? { tls } : {}) });
        this.#listener = listener;
        this.#listening = `${e.hostname.includes(":") ? `[${e.hostname}]` : e.hostname}:${listener.port}`;
      }
    } catch (error) {
      if (error instanceof PsyneError) throw error;
      const code = (error as { code?: string }).code;
      if (code === "EADDRINUSE") throw new ChannelExistsError(`${this.uri}: ${e.display} is in use: another process listens there`);
      throw new PsyneError("SYSTEM", `${this.uri}: cannot listen on ${e.display}: ${(error as Error).message}`);
    }
    this.#listener.unref();
    warnIfExposed(this.uri, e, this.#options);
    debug(this.uri, `listening on ${this.#listening} (${this.mode}, ${this.bufferSize} bytes)`);
  }

  #connect(): void {
    if (this.#closed || this.#connecting || this.#failure !== null) return;
    this.#connecting = true;
    const e = this.endpoint;
    const tls = this.#options.tls as Parameters<typeof Bun.connect>[0]["tls"];
    const socket = this.#handlers();
    const connecting =
      e.scheme === "unix"
        ? Bun.connect<Connection>({ unix: e.unix, socket, ...(tls ? { tls } : {}) })
        : Bun.connect<Connection>({ hostname: e.hostname, port: e.port, socket, ...(tls ? { tls } : {}) });
    connecting.then(
      () => {},
      (error: Error) => {
        this.#connecting = false;
        debug(this.uri, `connecting to ${e.display}: ${error.message}`);
        this.#retry(`cannot connect to ${e.display}: ${error.message}`);
      },
    );
  }

  #retry(why: string): void {
    if (this.#closed || this.#failure !== null) return;
    if (!this.#reconnect) {
      this.fatal(new PsyneError("DISCONNECTED", `${this.uri}: ${why} (reconnect: false)`), false);
      return;
    }
    const delay = this.#backoff * (0.8 + 0.4 * Math.random());
    this.#backoff = Math.min(this.#backoff * 2, RECONNECT_MAX_MS);
    this.#retryTimer = unrefTimeout(() => {
      this.#retryTimer = null;
      this.#connect();
    }, delay);
  }

  #helloFrame(nonce: Uint8Array): Uint8Array {
    const capacity = this.rxPort?.capacity ?? 0; // 0: the same as the listener's (a connector still learning it)
    const mode = this.#mode === null ? ADOPT_MODE : modeIds[this.#mode];
    return frame(FrameKind.HELLO, mode, capacity, helloBody(this.#session, this.#stream, nonce, this.token !== null));
  }

  // ---- the handshake's decisions -------------------------------------------------------------------

  /** Listener: a connector proved (or not) the token; let it in, or refuse it with the reason. */
  admit(connection: Connection, hello: Hello, connectorProof: Uint8Array): void {
    const refuse = (code: number, reason: string) => {
      this.#refusedCount++;
      debug(this.uri, `refused ${connection.address}: ${reason}`);
      connection.write(frame(FrameKind.REFUSE, code, 0, utf8(reason)), false);
      connection.fail("refused", reason, true);
    };
    const token = this.token;
    if (token !== null && !proofMatches(proof(token, "connector", connection.nonce, hello.nonce), connectorProof))
      return refuse(RefuseCode.AUTH, `${this.uri} requires a token: the connector's ${hello.token ? "token is wrong" : "has none (options.auth)"}`);
    const mode = this.mode;
    if (hello.mode !== ADOPT_MODE && hello.mode !== modeIds[mode])
      return refuse(RefuseCode.CONFIG, `${this.uri} is ${mode}, the connector asked for ${modeNames[hello.mode] ?? `mode ${hello.mode}`}`);
    const session = hex(hello.session);
    let peer = this.#peers.get(session);
    if (mode === "SPSC") {
      for (const other of this.#peers.values())
        if (other !== peer && other.connection !== null)
          return refuse(RefuseCode.ROLE, `${this.uri} is SPSC and already has its connector (${other.address}); one connector at a time`);
    }
    if (peer?.connection) peer.connection.fail("replaced", "the same peer connected again"); // its old connection is dead, it just does not know it
    const isNew = peer === undefined;
    if (peer === undefined) {
      peer = new Peer(session, connection.address);
      if (mode === "BROADCAST") {
        try {
          peer.outbound = new Outbound(new RingPort(this.#tx!, "consumer"), this, randomId());
        } catch (error) {
          return refuse(RefuseCode.ROLE, `${this.uri} cannot take another subscriber: ${(error as Error).message}`);
        }
        peer.outbound.peer = peer;
      }
    }
    peer.address = connection.address;
    if (isNew) this.#peers.set(session, peer);
    const listenerProof = token === null ? new Uint8Array(PROOF_BYTES) : proof(token, "listener", hello.nonce, connection.nonce);
    const body = new Uint8Array(ACCEPT_BYTES);
    body.set(this.#session, 0);
    body.set((peer.outbound ?? this.#outbound)?.stream ?? new Uint8Array(16), 16);
    body.set(listenerProof, 32);
    new DataView(body.buffer).setUint32(64, this.bufferSize, true);
    connection.write(frame(FrameKind.ACCEPT, modeIds[mode], this.rxPort?.capacity ?? 0, body), false);
    connection.peerCapacity = hello.capacity === 0 ? this.bufferSize : hello.capacity;
    this.#established(connection, peer, hello.stream);
  }

  /** Connector: the listener accepted; check its proof, adopt its mode and size, start. */
  accepted(connection: Connection, mode: number, capacity: number, body: Uint8Array, listenerNonce: Uint8Array): void {
    const token = this.token;
    const listenerProof = body.subarray(32, 64);
    if (token !== null && !proofMatches(proof(token, "listener", connection.nonce, listenerNonce), listenerProof)) {
      this.fatal(new PsyneError("AUTH_FAILED", `${this.uri}: the listener did not prove it knows the token (it has another, or none)`));
      connection.fail("auth", "the listener's proof is wrong");
      return;
    }
    const listenerMode = modeNames[mode];
    const listenerSize = new DataView(body.buffer, body.byteOffset, body.byteLength).getUint32(64, true);
    if (listenerMode === undefined || !(DIRECT_MODES as readonly string[]).includes(listenerMode)) {
      connection.fail("protocol", `the listener accepted with mode ${mode}`);
      return;
    }
    if (this.#mode !== null && this.#mode !== listenerMode) {
      this.fatal(new ChannelConfigError(`${this.uri}: the listener is ${listenerMode}, this channel is ${this.#mode}`));
      connection.fail("config", "mode mismatch");
      return;
    }
    if (this.#tx === null && this.#rx === null) {
      this.#mode = listenerMode;
      if (this.#options.role !== undefined) {
        try {
          this.#checkRole(listenerMode, this.#options.role);
        } catch (error) {
          this.fatal(error as PsyneError);
          connection.fail("config", (error as Error).message);
          return;
        }
      }
      this.#openRings(listenerMode, this.#bufferSize ?? listenerSize);
    }
    connection.peerCapacity = capacity;
    const session = hex(body.subarray(0, 16));
    let peer = this.#peers.get(session);
    if (peer === undefined) {
      for (const old of this.#peers.values()) this.#forget(old, "the listener restarted"); // a new peer
      peer = new Peer(session, connection.address);
      this.#peers.set(session, peer);
    }
    this.#backoff = RECONNECT_FIRST_MS;
    this.#established(connection, peer, body.subarray(16, 32));
  }

  #established(connection: Connection, peer: Peer, peerStream: Uint8Array): void {
    peer.cancelAway?.();
    peer.cancelAway = null;
    peer.connection = connection;
    peer.connectedSince = Date.now();
    peer.awaySince = null;
    connection.peer = peer;
    connection.opened();
    debug(this.uri, `${this.side === "listener" ? "accepted" : "connected to"} ${connection.address} (${this.mode})`);
    const mode = this.mode;
    if (receives(mode, this.side)) {
      const key = hex(peerStream);
      let inbound = this.#inbounds.get(key);
      if (inbound === undefined) {
        inbound = new Inbound();
        inbound.ackedPos = this.rxPort!.released();
        this.#inbounds.set(key, inbound);
      }
      inbound.connection = connection;
      inbound.peer = peer;
      connection.inbound = inbound;
      // what the consumer released before a cut may not have been acknowledged yet
      inbound.advance(this.rxPort!.released());
      if (inbound.hasReleased) {
        connection.write(frame(FrameKind.ACK, 0, inbound.releasedSeq), false);
        inbound.ackedSeq = inbound.releasedSeq;
        inbound.ackedPos = this.rxPort!.released();
      }
    }
    if (sends(mode, this.side)) {
      // a message the peer's ring cannot hold is MessageTooLargeError at send from now on
      const limit = connection.peerCapacity - REC_HEADER;
      if (limit < this.#messageLimit) {
        this.#messageLimit = limit;
        this.#tx![MESSAGE_LIMIT](limit);
      }
      const outbound = peer.outbound ?? this.#outbound!;
      outbound.peer = peer;
      connection.outbound = outbound;
      outbound.attach(connection);
    }
    this.#readyWaits.check();
  }

  /** Connector: the listener refused us. */
  refused(code: number, reason: string): void {
    const message = `${this.uri}: the listener refused this connector: ${reason}`;
    const error =
      code === RefuseCode.ROLE
        ? new ChannelRoleError(message)
        : code === RefuseCode.CONFIG
          ? new ChannelConfigError(message)
          : code === RefuseCode.AUTH
            ? new PsyneError("AUTH_FAILED", message)
            : new PsyneError("PROTOCOL", message);
    this.fatal(error);
  }

  connectionClosed(connection: Connection, wasOpen: boolean): void {
    this.#connections.delete(connection);
    this.blocked.delete(connection);
    if (connection.outbound) connection.outbound.detach(connection);
    const inbound = connection.inbound;
    if (inbound && inbound.connection === connection) inbound.connection = null;
    const peer = connection.peer;
    if (peer && peer.connection === connection) {
      peer.connection = null;
      peer.bytesIn += connection.bytesIn;
      peer.bytesOut += connection.bytesOut;
      peer.awaySince = Date.now();
      if (connection.bye) this.#forget(peer, "it closed its channel");
      else if (!this.#closed) peer.cancelAway = this.#awayTimer(peer);
    }
    if (this.#closed) return;
    if (wasOpen) debug(this.uri, `lost ${connection.address}`);
    if (this.side === "connector") {
      this.#connecting = false;
      if (wasOpen) this.#backoff = RECONNECT_FIRST_MS;
      this.#retry(`the connection to ${connection.address} was lost`);
    }
  }

  /** A peer away longer than peerTimeout is gone: a BROADCAST subscriber stops holding the producer back. */
  #awayTimer(peer: Peer): () => void {
    if (this.#peerTimeout === Number.POSITIVE_INFINITY) return () => {};
    const timer = unrefTimeout(() => this.#forget(peer), this.#peerTimeout);
    return () => clearTimeout(timer);
  }

  #forget(peer: Peer, why = `away longer than ${this.#peerTimeout} ms`): void {
    if (peer.connection !== null || peer.gone) return;
    peer.cancelAway?.();
    peer.gone = true;
    debug(this.uri, `peer ${peer.address} is gone (${why})`);
    if (peer.outbound) {
      peer.outbound.close(); // its subscriber handle no longer holds the producer back
      peer.outbound = null;
      this.#tx?.[WAKE](WaitKind.Space);
    }
    this.#peers.delete(peer.session);
    for (const [stream, inbound] of this.#inbounds)
      if (inbound.peer === peer && inbound.connection === null && inbound.cpSeq.length === 0) this.#inbounds.delete(stream);
    this.#gone.push(peer);
    if (this.#gone.length > GONE_PEERS_KEPT) this.#gone.shift();
    this.#flushWaits.check();
  }
}

registerTransport("tcp", (uri, address, options) => new StreamTransport("tcp", uri, address, options));
registerTransport("unix", (uri, address, options) => new StreamTransport("unix", uri, address, options));
