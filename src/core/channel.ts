// A channel handle: opens the segment through the C core, maps it once, and moves messages
// in and out of it. Follow one message: new FloatVector(ch, n) -> [ALLOC] -> psy_claim;
// ch.send(v) -> psy_commit; ch.receive() -> psy_poll -> a typed-array view of the record.
import { ptr, toArrayBuffer } from "bun:ffi";
import {
  ChannelFullError,
  fromNative,
  InvalidChannelNameError,
  MessageTooLargeError,
  MessageTypeError,
  NativeCode,
  PsyneError,
} from "./errors";
import { checkCallback, checkMax, checkTimeout, checkUint32, checkWaitOptions, describe, invalidArgument } from "./check";
import { cstr, type Handle, lastError, lib } from "./ffi";
import { debug } from "./debug";
import { type HeaderInfo, readHeader } from "./header";
import { layout } from "./layout";
import { sweepSoon } from "./cleanup";
import { Parking, spin, WaitKind, type WaitOptions } from "./waiting";
import { BLOCK_MAX, FILL, MessageBlock } from "./block";
import { FLY_ABANDON, FLY_CLAIM, FLY_CLAIM_ASYNC, FLY_COMMIT, FLY_POLL, FLY_POLL_ASYNC, FLY_RELEASE, FLY_VIEW, type FlyType, UNHOLD, type Unholdable } from "./flyweight";
import {
  ALLOC,
  ALLOC_ASYNC,
  accepts,
  BUFFER,
  ByteVector,
  CHECKED,
  channelView,
  checkMessageType,
  DISCARD,
  JsonType,
  makeMeta,
  META,
  type Message,
  SEND_SIDE,
  type MessageChannel,
  type MessageClass,
  type MessageMeta,
  MessageState,
  type MessageType,
  RECEIVE_SIDE,
  RELEASE,
  retire,
  TextType,
  TypeId,
  typeById,
} from "./messages";

/** Channel modes; see SPEC.md for what each guarantees. */
export const ChannelMode = {
  SPSC: "SPSC",
  MPSC: "MPSC",
  SPMC: "SPMC",
  MPMC: "MPMC",
  BROADCAST: "BROADCAST",
} as const;
export type ChannelMode = (typeof ChannelMode)[keyof typeof ChannelMode];
const modeIds: Record<ChannelMode, number> = { SPSC: 0, MPSC: 1, SPMC: 2, MPMC: 3, BROADCAST: 4 };
const modeNames = Object.keys(modeIds) as ChannelMode[];

export type OpenMode = "create-or-attach" | "create" | "attach";
const openModeIds: Record<OpenMode, number> = { "create-or-attach": 0, create: 1, attach: 2 };

export interface ChannelOptions {
  /** Bytes of message storage, rounded up to a power of two (4096 to 1 GiB); default 4 MiB, or the existing channel's. */
  bufferSize?: number | undefined;
  /** Default SPSC, or the existing channel's. */
  mode?: ChannelMode | undefined;
  /** File mode of a new segment; default 0o600. */
  permissions?: number | undefined;
  open?: OpenMode | undefined;
  /** Take this role at once instead of at the first send or receive. */
  role?: "producer" | "consumer" | undefined;
  // network channels (tcp://, unix://, udp://, nats://): SPEC.md "Beyond one machine"
  /** tcp/unix/udp: listen on the address instead of connecting to it (tcp://:PORT always listens). */
  listen?: boolean | undefined;
  /** tcp/unix: both sides prove this shared secret to each other without sending it. */
  auth?: { token: string } | undefined;
  /** tcp: Bun's TLS options (key, cert, ca, ...). */
  tls?: Record<string, unknown> | undefined;
  /** A connector reconnects by itself with backoff (default true). */
  reconnect?: boolean | undefined;
  /** Milliseconds a disconnected peer is waited for: after that stats() reports it gone, and a BROADCAST producer stops waiting for it (default 10 000). */
  peerTimeout?: number | undefined;
  /** udp: the local interface address multicast is joined and sent on (e.g. 127.0.0.1; default: the system's choice by route). */
  multicastInterface?: string | undefined;
  /** nats: options for the NATS client (servers, token, user, pass, tls, ...). */
  nats?: Record<string, unknown> | undefined;
  /** nats: a JetStream durable consumer of this name, and a stream on the subject. */
  durable?: string | undefined;
  /** nats: the queue group SPMC/MPMC consumers join (default: the subject). */
  queue?: string | undefined;
  /** nats, durable: milliseconds a consumer may hold a message before it goes to another (default 30 000). */
  ackWait?: number | undefined;
}

/** A network channel's peer in stats() (tcp://, unix://: each connection's far end). */
export interface PeerStats {
  /** host:port, or the socket path. */
  address: string;
  /** The peer's session (its channel handle), in hex. */
  session: string;
  /** connected; away (disconnected, waited for until peerTimeout); gone (away longer). */
  state: "connected" | "away" | "gone";
  connectedSince: Date | null;
  /** When it went away (away, gone). */
  awaySince: Date | null;
  bytesIn: number;
  bytesOut: number;
  messagesIn: number;
  messagesOut: number;
  /** Messages sent to it again after a reconnect. */
  resends: number;
}

/** What network channels add to stats() (SPEC.md "Beyond one machine"). */
export interface NetworkStats {
  /** A listener's address (with the port it got, for port 0). */
  listening?: string;
  peers?: PeerStats[];
  /** Connectors a listener refused (role, mode, auth). */
  refused?: number;
  /** Connections closed for bad input, by reason (protocol, handshake, version, ...). */
  errors?: Record<string, number>;
  /** udp: datagrams that never arrived (gaps in a sender's sequence). */
  lost?: number;
  /** udp: datagrams that arrived after a later one, dropped. */
  reordered?: number;
}

export type ChannelStats = Omit<HeaderInfo, "cursors" | "createdAt"> & { mode: ChannelMode } & NetworkStats & {
  /** A network channel's own counters (nats://: connection state, messages dropped as malformed, ...). */
  network?: Readonly<Record<string, number | string | boolean | null>>;
};

// psy_wait takes milliseconds as an i32: receiveSync waits longer in rounds of this
const MAX_WAIT_MS = 2 ** 31 - 1;

const NAME_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

/**
 * A channel carried by something other than this machine's shared memory (src/net/: tcp://,
 * unix://, udp://, nats://): a local ring this handle sends into and one it receives from, with a
 * pump between them and the outside. The Channel forwards to the local rings, so every message
 * type, wait, mode rule and stat is the ring's own code.
 */
export interface Transport {
  readonly mode: ChannelMode;
  /** Bytes of this side's rings. */
  readonly bufferSize: number;
  readonly closed: boolean;
  /** The local ring this handle sends into; throws ChannelRoleError where this end may not send. */
  sender(): Channel;
  /** The local ring this handle receives from; throws ChannelRoleError where this end may not receive. */
  receiver(): Channel;
  ready(options: WaitOptions): Promise<void>;
  flush(options: WaitOptions): Promise<void>;
  stats(): ChannelStats;
  close(): void;
}
/** Makes the transport for `uri` (its part after the scheme is `address`); throws typed errors. */
export type TransportFactory = (uri: string, address: string, options: ChannelOptions) => Transport;
const transports = new Map<string, TransportFactory>();
/** A transport module (src/net/) registers its schemes; the channel never imports them itself. */
export function registerTransport(scheme: string, factory: TransportFactory): void {
  transports.set(scheme, factory);
}
const knownSchemes = () => ["ipc", "memory", ...transports.keys()].map((s) => `${s}://`).join(", ");

/** Splits a channel URI, validating the name before any system call. */
export function parseUri(uri: unknown): { scheme: string; name: string } {
  if (typeof uri !== "string") throw new InvalidChannelNameError(`channel URI must be a string, got ${typeof uri}`);
  const match = /^([a-z]+):\/\/(.*)$/.exec(uri);
  if (!match) throw new InvalidChannelNameError(`invalid channel URI '${uri}': expected a URI such as ipc://NAME (schemes: ${knownSchemes()})`);
  const [, scheme = "", name = ""] = match;
  if (transports.has(scheme)) return { scheme, name }; // the transport checks its own address
  if (scheme !== "ipc" && scheme !== "memory")
    throw new InvalidChannelNameError(`unknown channel scheme '${scheme}://' in '${uri}': use one of ${knownSchemes()}`);
  if (!NAME_PATTERN.test(name))
    throw new InvalidChannelNameError(
      `invalid channel name '${name}' in '${uri}': use 1 to 200 of [A-Za-z0-9._-], not starting with '.'`,
    );
  return { scheme, name };
}

/** The segment name behind a URI (memory:// channels have none in /dev/shm: see PRIVATE). */
export function segmentName(_scheme: string, name: string): string {
  return name;
}

/** psyne.h PSY_OPEN_PRIVATE: the channel lives in this process's memory, shared with its Workers only. */
const PRIVATE = 0x100;

/** Internal: a transport's notifications from its local rings (see Channel[TRANSPORT_HOOKS]). */
export const TRANSPORT_HOOKS = Symbol("psyne.transportHooks");

/** Internal: a transport wakes the waits parked on one of its local rings (see Channel[WAKE]). */
export const WAKE = Symbol("psyne.wake");

/** Internal: a transport lowers the largest message its local send ring takes (a udp datagram, a peer's smaller ring). */
export const MESSAGE_LIMIT = Symbol("psyne.messageLimit");

/** Internal: observe a channel without consuming (see Channel[PEEK]). */
export const PEEK = Symbol("psyne.peek");

/** Internal: retained reading for bridges and pumps (see Channel[POLL_RETAINED]). */
export const POLL_RETAINED = Symbol("psyne.pollRetained");
export const RELEASE_TO = Symbol("psyne.releaseTo");
export const RECV_RETAINED = Symbol("psyne.recvRetained");

/** Internal: a transport whose connection failed for good rejects the waits parked on its rings with its error. */
export const FAIL_WAITS = Symbol("psyne.failWaits");


const openChannels = new Set<Channel>();
let exitHookInstalled = false;
function trackOpen(channel: Channel): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // a normal exit detaches; signals and crashes are handled by liveness instead
    process.on("exit", closeAllChannels);
  }
  openChannels.add(channel);
}

/** Closes every channel this process has open. */
export function closeAllChannels(): void {
  for (const c of [...openChannels]) c.close();
}

export class Channel implements MessageChannel {
  readonly uri: string;
  /** The channel's name (the part after ipc://). */
  readonly name: string;
  readonly mode: ChannelMode;
  /** Bytes of message storage (the rounded capacity). */
  readonly bufferSize: number;

  #handle: Handle | null;
  // a network channel: its transport and local rings (the handle fields below are then unused)
  #net: Transport | null = null;
  // set by a transport on its local rings: called (the transport batches them) after this handle
  // published messages, and after it may have freed space (released a message)
  #afterSend: (() => void) | null = null;
  #afterRelease: (() => void) | null = null;
  #spins = true; // see #spin
  #buffer: ArrayBuffer;
  #maxMessage = 0; // the largest payload a message may have: the ring's, or less (MESSAGE_LIMIT)
  #polled: Uint32Array; // psy_polled_record: index, length, type, span (process-local)
  #polledBuffer: ArrayBuffer;
  #claimed: Uint32Array; // psy_claimed(): the last claim's first index and per-record span
  #claimedBuffer: ArrayBuffer;
  #held: Message | null = null; // the received message this handle holds
  #reader: Unholdable | null = null; // or the T.reader positioned on the record this handle holds, or its block
  #block: MessageBlock | null = null; // receiveBlock()'s, made on first use
  #blockTable: ArrayBuffer | null = null; // its C table (psy_block), process-local
  #payloadBase: number; // buffer offset of ring index 0's payload
  #parking: Parking | null = null; // async waits, made on first use
  #bytes: Uint8Array | null = null; // the whole mapping, for the batch calls
  // The receive in progress on this handle ("recv()", "messages()", "drain()", ...) or null: one
  // at a time, since each receive releases the message before it.
  #receiving: string | null = null;
  // A recv() frees the handle one microtask after it settles: its caller's await runs first
  // only after that, so two recv() calls in a row without an await still find the first pending.
  #endRecv = (): void => {
    this.#receiving = null;
  };

  constructor(uri: string, options: ChannelOptions = {}) {
    const { scheme, name } = parseUri(uri);
    if (typeof options !== "object" || options === null || Array.isArray(options))
      throw invalidArgument("createChannel(uri, options): options", "an object { bufferSize, mode, permissions, open, role }", options);
    const transport = transports.get(scheme);
    if (transport) {
      const net = transport(uri, name, options);
      this.#net = net;
      this.#handle = null;
      this.#buffer = this.#polledBuffer = this.#claimedBuffer = new ArrayBuffer(0);
      this.#polled = this.#claimed = new Uint32Array(0);
      this.#payloadBase = 0;
      this.uri = uri;
      this.name = name;
      this.mode = net.mode;
      this.bufferSize = net.bufferSize;
      // a connector that left them out learns mode and size from its listener in the handshake
      Object.defineProperty(this, "mode", { get: () => net.mode, enumerable: true });
      Object.defineProperty(this, "bufferSize", { get: () => net.bufferSize, enumerable: true });
      this[SEND_SIDE] = () => net.sender();
      this[RECEIVE_SIDE] = () => net.receiver();
      trackOpen(this);
      return;
    }
    const bufferSize = options.bufferSize ?? 0;
    if (typeof bufferSize !== "number" || !Number.isInteger(bufferSize) || bufferSize < 0)
      throw invalidArgument("bufferSize", "a positive integer (bytes)", options.bufferSize);
    if (bufferSize > layout.MAX_CAPACITY)
      throw new PsyneError("INVALID_ARGUMENT", `bufferSize ${bufferSize} is larger than the maximum ${layout.MAX_CAPACITY}`);
    if (bufferSize !== 0 && bufferSize < 64)
      throw new PsyneError("INVALID_ARGUMENT", `bufferSize ${bufferSize} is too small: at least ${layout.MIN_CAPACITY} bytes are used, ask for 64 or more`);
    const mode = options.mode;
    if (mode !== undefined && (typeof mode !== "string" || !Object.hasOwn(modeIds, mode)))
      throw new PsyneError("INVALID_ARGUMENT", `unknown channel mode ${describe(mode)}: use one of ${modeNames.join(", ")}`);
    const open = options.open ?? "create-or-attach";
    if (typeof open !== "string" || !Object.hasOwn(openModeIds, open))
      throw new PsyneError("INVALID_ARGUMENT", `unknown open mode ${describe(open)}: use "create-or-attach", "create" or "attach"`);
    const permissions = options.permissions ?? 0o600;
    if (typeof permissions !== "number" || !Number.isInteger(permissions) || permissions < 0 || permissions > 0o777)
      throw invalidArgument("permissions", "a file mode from 0 to 0o777", options.permissions);
    const role = options.role;
    if (role !== undefined && role !== "producer" && role !== "consumer")
      throw invalidArgument("role", '"producer" or "consumer"', role);

    const errorOut = new Int32Array(new ArrayBuffer(4));
    const handle = lib.psy_open(
      cstr(segmentName(scheme, name)),
      bufferSize,
      mode === undefined ? -1 : modeIds[mode],
      permissions,
      openModeIds[open] | (scheme === "memory" ? PRIVATE : 0),
      ptr(errorOut),
    );
    if (!handle) {
      const error = fromNative(errorOut[0]!, lastError());
      debug(uri, `open failed: ${error.message}`);
      throw error;
    }
    // a Worker that ends (terminate()) with this channel open leaves it as a crashed process would
    lib.psy_bind_to_thread(handle);
    this.#handle = handle as Handle;
    this.uri = uri;
    this.name = name;
    this.mode = modeNames[lib.psy_mode(handle)]!;
    this.bufferSize = lib.psy_capacity(handle);
    this.#maxMessage = this.bufferSize - layout.REC_HEADER;
    this.#buffer = toArrayBuffer(lib.psy_base(handle)!, 0, lib.psy_map_size(handle));
    this.#polledBuffer = toArrayBuffer(lib.psy_polled(handle)!, 0, 16);
    this.#polled = new Uint32Array(this.#polledBuffer);
    this.#claimedBuffer = toArrayBuffer(lib.psy_claimed(handle)!, 0, 16);
    this.#claimed = new Uint32Array(this.#claimedBuffer);
    this.#payloadBase = layout.RING_OFFSET + layout.REC_HEADER;
    trackOpen(this);
    debug(uri, `opened (${this.mode}, ${this.bufferSize} bytes, participant ${lib.psy_slot(handle)})`);
    sweepSoon();
    if (role !== undefined) {
      const rc = lib.psy_take_role(handle, role === "producer" ? layout.ROLE_PRODUCER : layout.ROLE_CONSUMER);
      if (rc < 0) {
        const err = fromNative(rc, lastError());
        this.close();
        throw err;
      }
    }
  }

  get closed(): boolean {
    return this.#net ? this.#net.closed : this.#handle === null;
  }

  /** A network channel's messages are allocated in its local send ring (messages.ts checkChannel). */
  [SEND_SIDE]?: () => Channel;
  /** ...and its T.reader reads its local receive ring. */
  [RECEIVE_SIDE]?: () => Channel;

  /** Internal: messages larger than `bytes` throw MessageTooLargeError (a transport's send ring). */
  [MESSAGE_LIMIT](bytes: number): void {
    this.#maxMessage = Math.min(bytes, this.bufferSize - layout.REC_HEADER);
  }

  /** Internal: a transport's notifications from one of its local rings (see #afterSend). */
  [TRANSPORT_HOOKS](afterSend: (() => void) | null, afterRelease: (() => void) | null): void {
    this.#afterSend = afterSend;
    this.#afterRelease = afterRelease;
    this.#spins = false; // and its waits are woken by the pump (WAKE), not by a waiter thread
  }

  /**
   * Internal: a transport's pump, on this thread, just changed this ring (a message arrived, room
   * was freed): let the parked waits try now rather than when the waiter thread's wake-up comes
   * round through the event loop (tens of microseconds later).
   */
  [WAKE](kind: WaitKind): void {
    this.#parking?.wake(kind);
  }

  /**
   * spin() before parking, except on a transport's local ring: what a wait there waits for is
   * done by the pump on this very thread, which a spin would only hold up.
   */
  #spin<T>(attempt: () => T | null): T | null {
    return this.#spins ? spin(attempt) : null;
  }

  /**
   * Resolves once the channel can carry messages: at once for ipc:// and memory://; for a network
   * channel once the handshake with a peer is done (a listener: once it has one), or a nats://
   * subscription is registered with the server. Rejects on timeout (code TIMEOUT), on abort, and
   * with the peer's refusal (ChannelRoleError, ChannelConfigError, AUTH_FAILED).
   */
  async ready(options?: WaitOptions): Promise<void> {
    const checked = checkWaitOptions(options, "ready()");
    if (this.#net) return this.#net.ready(checked);
    this.#open();
  }

  #open(): Handle {
    if (this.#handle === null) throw new PsyneError("CHANNEL_CLOSED", `channel ${this.uri} is closed`);
    return this.#handle;
  }

  // ---- sending ------------------------------------------------------------------------------

  /** Claims a record for a new message (new T(channel, n)); see #claim. */
  [ALLOC](byteLength: number, type: { typeName: string; typeId: number }, orNull: boolean): number {
    if (this.#parking !== null) this.#checkSendOrder(`allocating a ${type.typeName}`);
    return this.#claim(byteLength, type, orNull);
  }

  /** Claims a record; returns its payload offset in the mapping, or -1 if full and `orNull`. */
  #claim(byteLength: number, type: { typeName: string; typeId: number }, orNull: boolean): number {
    const handle = this.#open();
    // checked here, not only in C: the C side takes a u32, and 2^32 bytes would wrap to a small size
    const index = byteLength > this.#maxMessage ? NativeCode.TOO_LARGE : lib.psy_claim(handle, byteLength, type.typeId);
    if (index >= 0) return this.#payloadBase + index;
    if (index === NativeCode.FULL) {
      if (orNull) return -1;
      throw this.#fullError(byteLength);
    }
    if (index === NativeCode.TOO_LARGE) throw this.#tooLarge(byteLength, type.typeName);
    throw fromNative(index, lastError());
  }

  #tooLarge(byteLength: number, typeName: string): MessageTooLargeError {
    const maxSize = this.#maxMessage;
    return new MessageTooLargeError(
      maxSize < this.bufferSize - layout.REC_HEADER
        ? `a ${typeName} message of ${byteLength} bytes can never reach the other end of ${this.uri}: it takes messages of at most ${maxSize} bytes`
        : `a ${typeName} message of ${byteLength} bytes can never fit channel ${this.uri}: capacity ${this.bufferSize}, largest message ${maxSize} bytes`,
      byteLength,
      maxSize,
    );
  }

  /**
   * Waiting sends and allocations of this handle leave in call order: a send or allocation that
   * does not wait throws rather than overtake them.
   */
  #checkSendOrder(what: string): void {
    const parking = this.#parking;
    if (parking === null) return;
    const waiting = parking.pending(WaitKind.Space);
    if (waiting > 0)
      throw new PsyneError(
        "INVALID_STATE",
        `${what} on ${this.uri} now would overtake ${waiting} sendAsync()/allocAsync() call${waiting === 1 ? "" : "s"} of this handle still waiting for room: ` +
          "await them first, or use sendAsync()/allocAsync(), which queue in call order",
      );
  }

  #park(): Parking {
    this.#parking ??= new Parking(this.#open(), !this.#spins); // a transport's ring: woken by its pump (WAKE)
    return this.#parking;
  }

  /**
   * Allocates in the channel, waiting for room; rejects with ChannelFullError on timeout.
   * Waiting allocations and sends of one handle are served in call order.
   */
  async [ALLOC_ASYNC]<M>(type: MessageClass<M>, length: number | undefined, options?: WaitOptions): Promise<M> {
    const { timeout, signal } = checkWaitOptions(options, `${type.typeName}.allocAsync()`);
    this.#open();
    if (signal?.aborted) throw signal.reason;
    const byteLength = type.byteLengthFor(length ?? 0);
    if (byteLength > this.#maxMessage) throw this.#tooLarge(byteLength, type.typeName);
    const attempt = (): M | null => this.#tryAlloc(type, length);
    if (this.#parking === null || this.#parking.pending(WaitKind.Space) === 0) {
      const message = attempt() ?? this.#spin(attempt);
      if (message) return message;
    }
    const got = await this.#park().wait(WaitKind.Space, byteLength, attempt, { timeout, signal });
    if (got) return got;
    this.#open();
    throw this.#fullError(byteLength, `still full after ${timeout} ms`);
  }

  #fullError(byteLength: number, why = ""): ChannelFullError {
    const used = lib.psy_used(this.#handle!);
    return new ChannelFullError(
      `channel ${this.uri} is full${why ? ` (${why})` : ""}: capacity ${this.bufferSize}, used ${used}, asked ${byteLength} (+${layout.REC_HEADER} header)`,
      this.bufferSize,
      used,
      byteLength,
    );
  }

  /**
   * send(), waiting for room while the channel is full. Rejects with ChannelFullError when the
   * timeout passes first (Infinity or none: no limit), and with the signal's reason when it
   * aborts; an aborted signal sends nothing. Waiting sends (and allocAsync() calls) of one
   * handle leave in call order; a send() while they wait throws INVALID_STATE rather than
   * overtake them. A message allocated on this channel is published at once (it has its room).
   */
  async sendAsync(data: Message | string | ArrayBufferView | ArrayBuffer, options?: WaitOptions): Promise<void> {
    if (this.#net) return this.#net.sender().sendAsync(data, options);
    const { timeout, signal } = checkWaitOptions(options, "sendAsync()");
    this.#open();
    if (signal?.aborted) throw signal.reason;
    const meta = (data as Message | null | undefined)?.[META];
    if (meta !== undefined && meta.channel === this && meta.state === MessageState.Allocated) return this.send(data);
    const size = this.#copySize(data);
    if (size > this.#maxMessage) throw this.#tooLarge(size, meta?.type.typeName ?? (typeof data === "string" ? "text" : "ByteVector"));
    const attempt = (): true | null => {
      try {
        this.#sendCopy(data);
        return true;
      } catch (error) {
        if (error instanceof ChannelFullError) return null;
        throw error;
      }
    };
    if ((this.#parking === null || this.#parking.pending(WaitKind.Space) === 0) && (attempt() || this.#spin(attempt))) return;
    if (await this.#park().wait(WaitKind.Space, size, attempt, { timeout, signal })) return;
    this.#open();
    throw this.#fullError(size, `still full after ${timeout} ms`);
  }

  /**
   * Resolves when everything this handle sent has been taken by a consumer (BROADCAST: by every
   * live subscriber); a producer awaits it before it exits. Parks, like recv(). Rejects with a
   * PsyneError of code TIMEOUT after `timeout` ms (Infinity or none: no limit), and with the
   * signal's reason when it aborts.
   */
  async flush(options?: WaitOptions): Promise<void> {
    if (this.#net) return this.#net.flush(checkWaitOptions(options, "flush()"));
    const { timeout, signal } = checkWaitOptions(options, "flush()");
    const handle = this.#open();
    if (signal?.aborted) throw signal.reason;
    const attempt = (): true | null => (lib.psy_unflushed(handle) === 0 ? true : null);
    if (attempt() || this.#spin(attempt)) return;
    if (await this.#park().wait(WaitKind.Flushed, 0, attempt, { timeout, signal })) return;
    this.#open();
    throw new PsyneError(
      "TIMEOUT",
      `flush() of ${this.uri} timed out after ${timeout} ms: the last ${lib.psy_unflushed(handle)} bytes this handle sent were not taken by a consumer yet`,
    );
  }

  /**
   * Observes without consuming (for `psyne tail`): a detached copy of the next message after
   * this handle's observer position, or null. `intact` is false if it was overwritten while
   * copied (the producer does not wait for observers).
   */
  [PEEK](): { message: Message; intact: boolean } | null {
    if (this.#net) throw new PsyneError("UNSUPPORTED", `${this.uri} is a network channel: observe it at either end's ipc:// channel, or with a bridge`);
    const handle = this.#open();
    const index = lib.psy_peek(handle);
    if (index < 0) {
      if (index === NativeCode.EMPTY) return null;
      throw fromNative(index, lastError());
    }
    const typeId = this.#polled[2]!;
    const type = typeById(typeId) ?? ByteVector;
    const start = this.#payloadBase + index;
    const copy = this.#buffer.slice(start, start + this.#polled[1]!);
    const meta = makeMeta(null, type, typeId, MessageState.Detached, copy, 0, copy.byteLength, -1);
    return { message: type.view(meta), intact: lib.psy_peek_intact(handle) === 1 };
  }

  [BUFFER](): ArrayBuffer {
    return this.#buffer;
  }

  // ---- flyweights: T.writer(channel), T.reader(channel) (src/core/flyweight.ts) ---------------

  [FLY_VIEW](): DataView {
    return channelView(this.#buffer);
  }

  [FLY_CLAIM](type: FlyType): number {
    if (this.#parking !== null) this.#checkSendOrder(`claim() of a ${type.typeName} writer`);
    return this.#claim(type.byteLength, type, true);
  }

  async [FLY_CLAIM_ASYNC](type: FlyType, options: { timeout: number | undefined; signal: AbortSignal | undefined }): Promise<number> {
    const { timeout, signal } = options;
    this.#open();
    if (signal?.aborted) throw signal.reason;
    const byteLength = type.byteLength;
    if (byteLength > this.#maxMessage) throw this.#tooLarge(byteLength, type.typeName);
    const attempt = (): number | null => {
      const offset = this.#claim(byteLength, type, true);
      return offset < 0 ? null : offset;
    };
    if (this.#parking === null || this.#parking.pending(WaitKind.Space) === 0) {
      const offset = attempt() ?? this.#spin(attempt);
      if (offset !== null) return offset;
    }
    const offset = await this.#park().wait(WaitKind.Space, byteLength, attempt, { timeout, signal });
    if (offset !== null) return offset;
    this.#open();
    throw this.#fullError(byteLength, `still full after ${timeout} ms`);
  }

  [FLY_COMMIT](offset: number): void {
    this.#open();
    this.#commitAt(offset);
  }

  [FLY_ABANDON](offset: number): void {
    const rc = lib.psy_abandon(this.#open(), offset - this.#payloadBase);
    if (rc < 0) throw fromNative(rc, lastError());
  }

  /** The next message for `reader`, releasing the one this handle held: its payload offset, or -1. */
  [FLY_POLL](reader: Unholdable, type: FlyType): number {
    if (this.#receiving !== null) this.#checkNotReceiving(`next() of a ${type.typeName} reader`);
    return this.#flyPoll(reader, type);
  }

  #flyPoll(reader: Unholdable, type: FlyType): number {
    const handle = this.#open();
    if (this.#held !== null || this.#reader !== null) this.#dropHeld();
    const index = lib.psy_poll(handle); // releases the message before it
    if (this.#afterRelease !== null) this.#afterRelease();
    if (index < 0) {
      if (index === NativeCode.EMPTY) return -1;
      throw fromNative(index, lastError());
    }
    const polled = this.#polled;
    if (polled[2] !== type.typeId || polled[1]! < type.byteLength) {
      lib.psy_unpoll(handle);
      const typeId = polled[2]!;
      const actual = typeId !== type.typeId ? (typeById(typeId)?.typeName ?? `type#${typeId}`) : `${polled[1]}-byte message`;
      throw new MessageTypeError(
        `the next message on ${this.uri} is a ${actual}, not a ${type.typeName} (${type.byteLength} bytes); it stays in the channel (receive() without a type takes any)`,
        type.typeName,
        actual,
      );
    }
    this.#reader = reader;
    return this.#payloadBase + index;
  }

  /** FLY_POLL, waiting (as recv(), and the handle's pending receive meanwhile): -1 on timeout. */
  async [FLY_POLL_ASYNC](reader: Unholdable, type: FlyType, options: { timeout: number | undefined; signal: AbortSignal | undefined }): Promise<number> {
    const { timeout, signal } = options;
    this.#open();
    this.#checkNotReceiving(`nextAsync() of a ${type.typeName} reader`);
    if (signal?.aborted) throw signal.reason;
    const attempt = (): number | null => {
      const offset = this.#flyPoll(reader, type);
      return offset < 0 ? null : offset;
    };
    this.#receiving = "nextAsync()";
    try {
      const offset = attempt() ?? this.#spin(attempt) ?? (await this.#park().wait(WaitKind.Data, 0, attempt, { timeout, signal }));
      return offset ?? -1;
    } finally {
      queueMicrotask(this.#endRecv);
    }
  }

  [FLY_RELEASE](reader: Unholdable): void {
    if (this.#reader !== reader) return; // another receive on this handle released it already
    this.#reader = null;
    const rc = lib.psy_release(this.#open());
    if (rc < 0) throw fromNative(rc, lastError());
    if (this.#afterRelease !== null) this.#afterRelease();
  }

  /**
   * Retained reading (a bridge forwarding to another channel): the next message after the last
   * one this returned, freeing nothing, with the position where it ends (modulo 2^52); null when
   * there is none. Its space stays taken until [RELEASE_TO] passes it, so a consumer that dies
   * first leaves it to the next one. SPSC, MPSC and BROADCAST only (throws INVALID_STATE for a
   * work queue); not mixed with receive() on the same handle.
   */
  [POLL_RETAINED](): { message: Message; end: number } | null {
    if (this.#net) return this.#net.receiver()[POLL_RETAINED]();
    const handle = this.#open();
    const index = lib.psy_poll_retained(handle);
    if (index < 0) {
      if (index === NativeCode.EMPTY) return null;
      throw fromNative(index, lastError());
    }
    const length = this.#polled[1]!;
    const typeId = this.#polled[2]!;
    const type = typeById(typeId) ?? ByteVector;
    const start = this.#payloadBase + index;
    const meta = CHECKED
      ? makeMeta(this, type, typeId, MessageState.Received, this.#buffer.slice(start, start + length), 0, length, start)
      : makeMeta(this, type, typeId, MessageState.Received, this.#buffer, start, length, start);
    return { message: type.view(meta), end: lib.psy_polled_end(handle) };
  }

  /** [POLL_RETAINED], waiting (parked, as recv() does) until there is a message; null on timeout. */
  async [RECV_RETAINED](options?: WaitOptions): Promise<{ message: Message; end: number } | null> {
    if (this.#net) return this.#net.receiver()[RECV_RETAINED](options);
    const { timeout, signal } = checkWaitOptions(options, "recv()");
    if (signal?.aborted) throw signal.reason;
    const attempt = () => this[POLL_RETAINED]();
    return attempt() ?? this.#spin(attempt) ?? (await this.#park().wait(WaitKind.Data, 0, attempt, { timeout, signal }));
  }

  /** Frees every message [POLL_RETAINED] returned up to the one ending at `end`. */
  [RELEASE_TO](end: number): void {
    if (this.#net) return this.#net.receiver()[RELEASE_TO](end);
    const rc = lib.psy_release_to(this.#open(), end);
    if (rc < 0) throw fromNative(rc, lastError());
    if (this.#afterRelease !== null) this.#afterRelease();
  }

  /** Rejects every wait parked on this handle with `error`; the handle stays open. */
  [FAIL_WAITS](error: Error): void {
    this.#parking?.failAll(error);
  }

  /**
   * Allocates a message in the channel, or returns null when the channel is full. Throws
   * INVALID_STATE while sendAsync()/allocAsync() calls of this handle wait (it would overtake them).
   */
  tryAlloc<M>(type: MessageClass<M>, length?: number): M | null {
    if (this.#net) return this.#net.sender().tryAlloc(type, length);
    checkMessageType(type, "tryAlloc(type, length): type");
    this.#checkSendOrder("tryAlloc()");
    return this.#tryAlloc(type, length);
  }

  #tryAlloc<M>(type: MessageClass<M>, length: number | undefined): M | null {
    const byteLength = type.byteLengthFor(length ?? 0);
    const offset = this.#claim(byteLength, type, true);
    if (offset < 0) return null;
    const meta = CHECKED
      ? makeMeta(this, type, type.typeId, MessageState.Allocated, new ArrayBuffer(byteLength), 0, byteLength, offset)
      : makeMeta(this, type, type.typeId, MessageState.Allocated, this.#buffer, offset, byteLength, offset);
    return type.view(meta) as M;
  }

  /**
   * Publishes a message allocated in this channel (zero-copy), or copies data in: a string
   * (arrives as text), a typed array or ArrayBuffer (arrives as a ByteVector), or a message from
   * elsewhere (arrives as its type). After send, the message's methods throw INVALID_STATE and its
   * elements are channel memory that belongs to later messages: do not touch them (PSYNE_CHECKED=1
   * makes such a bug throw). A copying send while sendAsync()/allocAsync() calls of this handle
   * wait throws INVALID_STATE rather than overtake them.
   */
  send(data: Message | string | ArrayBufferView | ArrayBuffer): void {
    if (this.#net) return this.#net.sender().send(data);
    const handle = this.#open();
    const meta = (data as Message | null | undefined)?.[META];
    if (meta !== undefined && meta.channel === this && meta.state === MessageState.Allocated) {
      const root = meta.owner ?? meta;
      if (CHECKED) new Uint8Array(this.#buffer, root.recordOffset, root.byteLength).set(new Uint8Array(root.buffer, 0, root.byteLength));
      const rc = lib.psy_commit(handle, (root.recordOffset - this.#payloadBase) >>> 0);
      if (rc < 0) throw fromNative(rc, lastError());
      retire(root, MessageState.Sent);
      if (this.#afterSend !== null) this.#afterSend();
      return;
    }
    this.#checkSendOrder("send()");
    this.#sendCopy(data);
  }

  /** The copying part of send(): data that is not a message allocated on this channel. */
  #sendCopy(data: Message | string | ArrayBufferView | ArrayBuffer): void {
    const meta = (data as Message | null | undefined)?.[META];
    if (meta !== undefined) {
      if (meta.state === MessageState.Allocated && meta.channel !== this)
        throw new PsyneError("INVALID_STATE", `a message allocated on ${meta.channel?.uri} cannot be sent on ${this.uri}`);
      if (meta.state === MessageState.Sent) throw new PsyneError("INVALID_STATE", `this ${meta.type.typeName} message was already sent`);
      if (meta.state === MessageState.Released)
        throw new PsyneError("INVALID_STATE", `this ${meta.type.typeName} message was released; copy() it to keep it`);
      this.#copyIn(new Uint8Array(meta.buffer, meta.byteOffset, meta.byteLength), meta.type, meta.typeId);
      return;
    }
    if (typeof data === "string") return this.#sendText(data, TextType);
    if (ArrayBuffer.isView(data)) {
      this.#copyIn(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), ByteVector, TypeId.ByteVector);
      return;
    }
    if (data instanceof ArrayBuffer) return this.#copyIn(new Uint8Array(data), ByteVector, TypeId.ByteVector);
    throw this.#notSendable(data);
  }

  #notSendable(data: unknown): PsyneError {
    return invalidArgument("send(data): data", "a message, a string, a typed array or an ArrayBuffer (sendJson() sends other values)", data);
  }

  /** Payload bytes #sendCopy(data) needs; throws as it would for data it cannot send. */
  #copySize(data: Message | string | ArrayBufferView | ArrayBuffer): number {
    const meta = (data as Message | null | undefined)?.[META];
    if (meta !== undefined) {
      if (meta.state === MessageState.Sent || meta.state === MessageState.Released || (meta.state === MessageState.Allocated && meta.channel !== this))
        this.#sendCopy(data); // throws the state error
      return meta.byteLength;
    }
    if (typeof data === "string") return Buffer.byteLength(data, "utf8");
    if (ArrayBuffer.isView(data) || data instanceof ArrayBuffer) return data.byteLength;
    throw this.#notSendable(data);
  }

  /**
   * The batch path: claims up to `count` messages of `byteLength` bytes at once, calls
   * `write(bytes, offset, i)` for each (write the i-th message's payload at `bytes[offset ...]`),
   * then publishes them all with one call. No object per message. Returns how many were sent:
   * as many as fit now (0 when the channel is full). If `write` throws, none is sent. `bytes` is
   * valid only during the call.
   */
  sendBatch(
    count: number,
    byteLength: number,
    write: (bytes: Uint8Array, offset: number, index: number) => void,
    type: MessageType = ByteVector,
  ): number {
    if (this.#net) return this.#net.sender().sendBatch(count, byteLength, write, type);
    const handle = this.#open();
    checkUint32(count, "sendBatch(count, byteLength, write): count");
    if (typeof byteLength !== "number" || !Number.isSafeInteger(byteLength) || byteLength < 0)
      throw invalidArgument("sendBatch(count, byteLength, write): byteLength", "an integer >= 0", byteLength);
    checkCallback(write, "sendBatch(count, byteLength, write): write", "(bytes, offset, index) => void that writes message `index` at bytes[offset...]");
    checkMessageType(type, "sendBatch(count, byteLength, write, type): type");
    const elementSize = (type as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1;
    if (byteLength < type.minBytes || byteLength % elementSize !== 0)
      throw new PsyneError(
        "INVALID_ARGUMENT",
        `sendBatch(count, byteLength, ...): a ${type.typeName} message of ${byteLength} bytes is not valid: ` +
          (byteLength < type.minBytes ? `it has ${type.minBytes} bytes` : `use a multiple of ${elementSize} bytes`),
      );
    if (byteLength > this.#maxMessage) throw this.#tooLarge(byteLength, type.typeName);
    this.#checkSendOrder("sendBatch()");
    if (count === 0) return 0;
    const claimed = lib.psy_claim_batch(handle, count, byteLength, type.typeId);
    if (claimed === NativeCode.FULL) return 0;
    if (claimed < 0) throw fromNative(claimed, lastError());
    const first = this.#claimed[0]!;
    const span = this.#claimed[3]!;
    const bytes = (this.#bytes ??= new Uint8Array(this.#buffer));
    try {
      if (CHECKED) {
        // each message in a buffer of its own, copied in after `write` and then detached
        for (let i = 0, offset = this.#payloadBase + first; i < claimed; i++, offset += span) {
          const own = new Uint8Array(byteLength);
          write(own, 0, i);
          bytes.set(own, offset);
          own.buffer.transfer(0);
        }
      } else {
        for (let i = 0, offset = this.#payloadBase + first; i < claimed; i++, offset += span) write(bytes, offset, i);
      }
    } catch (error) {
      lib.psy_abandon(handle, first);
      throw error;
    }
    const rc = lib.psy_commit(handle, first);
    if (rc < 0) throw fromNative(rc, lastError());
    if (this.#afterSend !== null) this.#afterSend();
    return claimed;
  }

  /**
   * The batch path for receiving: calls `read(bytes, offset, length, typeId)` for every message
   * available now (at most `max`), each a view of channel memory valid only during the call, and
   * releases them. No object per message. Returns how many.
   */
  drainBytes(read: (bytes: Uint8Array, offset: number, length: number, typeId: number) => void, max = Number.POSITIVE_INFINITY): number {
    if (this.#net) return this.#net.receiver().drainBytes(read, max);
    const handle = this.#open();
    checkCallback(read, "drainBytes(read): read", "(bytes, offset, length, typeId) => void, called with each message available now");
    checkMax(max, "drainBytes(read, max): max");
    this.#checkNotReceiving("drainBytes()");
    this.#dropHeld();
    const bytes = (this.#bytes ??= new Uint8Array(this.#buffer));
    const polled = this.#polled;
    let count = 0;
    this.#receiving = "drainBytes()";
    try {
      while (count < max) {
        const index = lib.psy_poll_batch(handle); // releases the previous one; frees space in bulk
        if (index < 0) {
          if (index === NativeCode.EMPTY) break;
          throw fromNative(index, lastError());
        }
        count++;
        if (CHECKED) {
          const start = this.#payloadBase + index;
          const own = new Uint8Array(this.#buffer.slice(start, start + polled[1]!));
          read(own, 0, polled[1]!, polled[2]!);
          own.buffer.transfer(0);
        } else {
          read(bytes, this.#payloadBase + index, polled[1]!, polled[2]!);
        }
      }
    } finally {
      this.#receiving = null;
      lib.psy_release(handle);
      if (this.#afterRelease !== null) this.#afterRelease();
    }
    return count;
  }

  /**
   * The batch path for receiving with no call per message: takes up to `max` messages available
   * now (1 to 256; default 256) and returns this handle's MessageBlock (the same object each
   * time): `count` messages, message i at `bytes[offset(i) ...]` for `length(i)` bytes, of type
   * `typeId(i)`; `view` is the same memory as a DataView. They stay valid until release(), the
   * next receiveBlock() or other receive on this handle, or close(). count 0: none now.
   */
  receiveBlock(max = BLOCK_MAX): MessageBlock {
    if (this.#net) return this.#net.receiver().receiveBlock(max);
    const handle = this.#open();
    if (typeof max !== "number" || !Number.isInteger(max) || max < 1 || max > BLOCK_MAX)
      throw invalidArgument("receiveBlock(max): max", `an integer from 1 to ${BLOCK_MAX}`, max);
    if (this.#receiving !== null) this.#checkNotReceiving("receiveBlock()");
    const block = (this.#block ??= this.#makeBlock(handle));
    if (this.#held !== null || this.#reader !== null) this.#dropHeld();
    const count = lib.psy_poll_block(handle, max); // releases what this handle held
    if (this.#afterRelease !== null) this.#afterRelease();
    if (count < 0) {
      if (count !== NativeCode.EMPTY) throw fromNative(count, lastError());
      return block;
    }
    block[FILL](count);
    this.#reader = block;
    return block;
  }

  #makeBlock(handle: Handle): MessageBlock {
    const bytes = (this.#bytes ??= new Uint8Array(this.#buffer));
    this.#blockTable = toArrayBuffer(lib.psy_block(handle)!, 0, 16 * BLOCK_MAX);
    const table = new Uint32Array(this.#blockTable);
    return new MessageBlock(bytes, channelView(this.#buffer), table, this.#payloadBase, () => {
      if (this.#reader !== this.#block) return;
      this.#reader = null;
      const rc = lib.psy_release(this.#open());
      if (rc < 0) throw fromNative(rc, lastError());
      if (this.#afterRelease !== null) this.#afterRelease();
    });
  }

  /** Sends any JSON value (copied once into the channel); receive() gives a message with .json(). */
  sendJson(value: unknown): void {
    if (this.#net) return this.#net.sender().sendJson(value);
    this.#open();
    let text: string | undefined;
    try {
      text = JSON.stringify(value);
    } catch (error) {
      throw invalidArgument("sendJson(value): value", `a value JSON can encode (${(error as Error).message})`, value);
    }
    if (text === undefined) throw invalidArgument("sendJson(value): value", "a value JSON can encode", value);
    this.#checkSendOrder("sendJson()");
    this.#sendText(text, JsonType);
  }

  #sendText(text: string, type: MessageType): void {
    const byteLength = Buffer.byteLength(text, "utf8");
    const offset = this.#claim(byteLength, type, false);
    new TextEncoder().encodeInto(text, new Uint8Array(this.#buffer, offset, byteLength));
    this.#commitAt(offset);
  }

  #copyIn(bytes: Uint8Array, type: MessageType, typeId: number): void {
    const offset = this.#claim(bytes.byteLength, { typeName: type.typeName, typeId }, false);
    new Uint8Array(this.#buffer, offset, bytes.byteLength).set(bytes);
    this.#commitAt(offset);
  }

  #commitAt(offset: number): void {
    const rc = lib.psy_commit(this.#handle!, offset - this.#payloadBase);
    if (rc < 0) throw fromNative(rc, lastError());
    if (this.#afterSend !== null) this.#afterSend();
  }

  [DISCARD](message: Message): void {
    const meta = message[META];
    const rc = lib.psy_abandon(this.#open(), meta.recordOffset - this.#payloadBase);
    if (rc < 0) throw fromNative(rc, lastError());
    retire(meta, MessageState.Released);
  }

  // ---- receiving ----------------------------------------------------------------------------

  #checkNotReceiving(call: string): void {
    if (this.#receiving !== null)
      throw new PsyneError(
        "INVALID_STATE",
        `${call} on ${this.uri} while this handle's ${this.#receiving} is pending: one handle serves one receive at a time ` +
          "(each receive releases the message before it); await it or end that loop first, or open another handle with createChannel() for concurrent consumers",
      );
  }

  /**
   * The next message, or null when there is none; never blocks. With a type, a message of
   * another type throws MessageTypeError and stays in the channel. The message is a view of
   * channel memory, valid until release(), this handle's next receive(), or the end of a
   * `using` block; copy() keeps it longer. Throws INVALID_STATE while a recv() or messages()
   * loop of this handle is pending.
   */
  receive(): Message | null;
  receive<M>(type: MessageClass<M>): M | null;
  receive<M>(type?: MessageClass<M>): M | Message | null;
  receive<M>(type?: MessageClass<M>): M | Message | null {
    if (this.#net) return this.#net.receiver().receive(type);
    this.#open();
    if (this.#receiving !== null) this.#checkNotReceiving("receive()");
    if (type !== undefined) checkMessageType(type, "receive(type): type");
    return this.#receive(type);
  }

  #receive<M>(type: MessageClass<M> | undefined): M | Message | null {
    if (this.#net) return this.#net.receiver().receive(type);
    const handle = this.#open();
    this.#dropHeld();
    const index = lib.psy_poll(handle); // releases the message before it
    if (this.#afterRelease !== null) this.#afterRelease();
    if (index < 0) {
      if (index === NativeCode.EMPTY) return null;
      throw fromNative(index, lastError());
    }
    const polled = this.#polled;
    const length = polled[1]!;
    const typeId = polled[2]!;
    let viewType: MessageType | undefined = type;
    if (type && type.typeId !== typeId) {
      if (!accepts(type, typeId)) {
        lib.psy_unpoll(handle);
        const actual = typeById(typeId)?.typeName ?? `type#${typeId}`;
        throw new MessageTypeError(
          `the next message on ${this.uri} is a ${actual}, not a ${type.typeName}; it stays in the channel (receive() without a type takes any)`,
          type.typeName,
          actual,
        );
      }
      viewType = typeById(typeId) ?? ByteVector; // text or json received as bytes
    } else if (!type) {
      viewType = typeById(typeId) ?? ByteVector;
    }
    if (viewType!.minBytes > length) {
      lib.psy_unpoll(handle);
      throw new MessageTypeError(
        `the next message on ${this.uri} has ${length} bytes, too short for ${viewType!.typeName} (${viewType!.minBytes})`,
        viewType!.typeName,
        `${length}-byte message`,
      );
    }
    const start = this.#payloadBase + index;
    const meta = CHECKED
      ? makeMeta(this, viewType!, typeId, MessageState.Received, this.#buffer.slice(start, start + length), 0, length, start)
      : makeMeta(this, viewType!, typeId, MessageState.Received, this.#buffer, start, length, start);
    const message = viewType!.view(meta);
    this.#held = message;
    return message;
  }

  /**
   * Waits for the next message: resolves with it, or with null when `timeout` ms pass first
   * (Infinity or none: no limit); rejects with the signal's reason when it aborts (an aborted
   * signal takes nothing), and with a PsyneError (CHANNEL_CLOSED) if the channel is closed
   * meanwhile. One receive at a time per handle: while one is pending, another recv(),
   * messages(), receive() or drain() rejects or throws INVALID_STATE. The waiter sleeps in the
   * kernel: it costs no CPU while idle.
   */
  recv(type?: undefined, options?: WaitOptions): Promise<Message | null>;
  recv<M>(type: MessageClass<M>, options?: WaitOptions): Promise<M | null>;
  recv<M>(type?: MessageClass<M>, options?: WaitOptions): Promise<M | Message | null>;
  async recv<M>(type?: MessageClass<M>, options?: WaitOptions): Promise<M | Message | null> {
    if (this.#net) return this.#net.receiver().recv(type, options);
    const { timeout, signal } = checkWaitOptions(options, "recv()");
    if (type !== undefined) checkMessageType(type, "recv(type): type");
    this.#open();
    this.#checkNotReceiving("recv()");
    if (signal?.aborted) throw signal.reason;
    this.#receiving = "recv()";
    try {
      const message = this.#receive(type) ?? this.#spin(() => this.#receive(type)); // after a short spin, park
      if (message) return message;
      return await this.#park().wait(WaitKind.Data, 0, () => this.#receive(type), { timeout, signal });
    } finally {
      queueMicrotask(this.#endRecv);
    }
  }

  /**
   * Every message as it arrives: `for await (const m of channel.messages(FloatVector))`. Each
   * message is released when the loop moves on; the loop ends when the channel is closed, and
   * throws the signal's reason at the next message once `signal` aborts. While the loop runs it
   * is this handle's pending receive (see recv()).
   */
  messages(type?: undefined, options?: { signal?: AbortSignal | undefined }): AsyncGenerator<Message, void, undefined>;
  messages<M>(type: MessageClass<M>, options?: { signal?: AbortSignal | undefined }): AsyncGenerator<M, void, undefined>;
  messages<M>(type?: MessageClass<M>, options?: { signal?: AbortSignal | undefined }): AsyncGenerator<M, void, undefined> {
    if (this.#net) return this.#net.receiver().messages(type as MessageClass<M>, options);
    if (type !== undefined) checkMessageType(type, "messages(type): type");
    const { timeout, signal } = checkWaitOptions(options, "messages()");
    if (timeout !== undefined)
      throw new PsyneError("INVALID_ARGUMENT", "messages() takes { signal } only: for a wait with a timeout use recv(type, { timeout })");
    return this.#messages(type, signal);
  }

  async *#messages<M>(type: MessageClass<M> | undefined, signal: AbortSignal | undefined): AsyncGenerator<M, void, undefined> {
    if (this.closed) return;
    this.#checkNotReceiving("messages()");
    this.#receiving = "messages()";
    const options = { signal };
    try {
      while (!this.closed) {
        if (signal?.aborted) throw signal.reason; // before taking each message
        let message: M | null;
        try {
          message =
            (this.#receive(type) as M | null) ??
            (this.#spin(() => this.#receive(type)) as M | null) ??
            ((await this.#park().wait(WaitKind.Data, 0, () => this.#receive(type), options)) as M | null);
        } catch (error) {
          if (this.closed && (error as PsyneError).code === "CHANNEL_CLOSED") return;
          throw error;
        }
        if (message === null) continue;
        try {
          yield message;
        } finally {
          if (!this.closed && (message as Message)[META].state === MessageState.Received) this[RELEASE](message as Message);
        }
      }
    } finally {
      this.#receiving = null;
    }
  }

  /**
   * Blocks this thread until a message arrives (null after timeoutMs, or when a signal arriving
   * during the wait interrupts it so its handler can run; no limit when omitted or Infinity). For
   * worker processes without an event loop: it freezes everything else in this thread.
   */
  receiveSync(type?: undefined, timeoutMs?: number): Message | null;
  receiveSync<M>(type: MessageClass<M>, timeoutMs?: number): M | null;
  receiveSync<M>(type?: MessageClass<M>, timeoutMs?: number): M | Message | null;
  receiveSync<M>(type?: MessageClass<M>, timeoutMs?: number): M | Message | null {
    if (this.#net)
      throw new PsyneError("UNSUPPORTED", `receiveSync() would block the thread that moves ${this.uri}'s messages from the network: use await recv()`);
    if (type !== undefined) checkMessageType(type, "receiveSync(type, timeoutMs): type");
    const timeout = checkTimeout(timeoutMs, "receiveSync(type, timeoutMs): timeoutMs") ?? Number.POSITIVE_INFINITY;
    this.#open();
    this.#checkNotReceiving("receiveSync()");
    const deadline = performance.now() + timeout;
    for (;;) {
      const message = this.#receive(type) ?? this.#spin(() => this.#receive(type));
      if (message) return message;
      const remaining = deadline - performance.now();
      if (remaining <= 0) return null;
      // psy_wait takes an i32 of milliseconds (-1: no limit); a longer wait goes round again
      const rc = lib.psy_wait(this.#handle!, WaitKind.Data, 0, remaining === Number.POSITIVE_INFINITY ? -1 : Math.min(Math.ceil(remaining), MAX_WAIT_MS));
      if (rc === NativeCode.INTERRUPTED) return this.#receive(type);
      if (rc < 0 && rc !== NativeCode.TIMEOUT) throw fromNative(rc, lastError());
    }
  }

  /**
   * Receives every message available now (at most `max`), calling `handler` with each and
   * releasing it after: the batch path, with no promise per message. Returns how many. (To
   * wait until consumers took what this handle sent, a producer uses flush().)
   */
  drain<M>(handler: (message: M) => void, max = Number.POSITIVE_INFINITY, type?: MessageClass<M>): number {
    if (this.#net) return this.#net.receiver().drain(handler, max, type);
    this.#open();
    checkCallback(
      handler,
      "drain(handler): handler",
      "(message) => void: drain() receives every message available now and calls it with each (a producer that wants to wait until consumers took its messages calls flush())",
    );
    checkMax(max, "drain(handler, max): max");
    if (type !== undefined) checkMessageType(type, "drain(handler, max, type): type");
    this.#checkNotReceiving("drain()");
    let count = 0;
    this.#receiving = "drain()";
    try {
      while (count < max) {
        const message = this.#receive(type) as (M & Message) | null;
        if (message === null) break;
        count++;
        try {
          handler(message);
        } finally {
          if (message[META].state === MessageState.Received) this[RELEASE](message);
        }
      }
    } finally {
      this.#receiving = null;
    }
    return count;
  }

  /** Marks the held message released, or moves a reader off it (the C side frees it at the next poll or release). */
  #dropHeld(): void {
    const held = this.#held;
    if (held !== null) {
      this.#held = null;
      retire(held[META], MessageState.Released);
    }
    const reader = this.#reader;
    if (reader !== null) {
      this.#reader = null;
      reader[UNHOLD]();
    }
  }

  [RELEASE](message: Message): void {
    const meta = message[META];
    const root = meta.owner ?? meta;
    if (root.state !== MessageState.Received) return;
    // a view made with .as() shares the record with the held message
    if (this.#held !== null && this.#held[META] === root) {
      this.#dropHeld();
      const rc = lib.psy_release(this.#open());
      if (rc < 0) throw fromNative(rc, lastError());
      if (this.#afterRelease !== null) this.#afterRelease();
    } else {
      retire(root, MessageState.Released);
    }
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /**
   * Counters and participants. Totals include processes that detached; they may lag messages
   * in flight.
   */
  stats(): ChannelStats {
    if (this.#net) return this.#net.stats();
    const handle = this.#open();
    const info = readHeader(new DataView(this.#buffer), (slot) => lib.psy_slot_alive(handle, slot) === 1, lib.psy_slot(handle));
    const { cursors: _, createdAt: __, ...stats } = info;
    return { ...stats, mode: this.mode, capacity: this.bufferSize, bytesInUse: lib.psy_used(handle) };
  }

  /**
   * Detaches. Allocated, unsent messages are dropped; a held message is released. The last
   * process to detach removes the segment unless it still holds undelivered messages.
   */
  close(): void {
    if (this.#net) {
      openChannels.delete(this);
      return this.#net.close();
    }
    const handle = this.#handle;
    if (handle === null) return;
    this.#dropHeld();
    this.#parking?.close(this.uri); // rejects pending waits, joins the waiter threads
    this.#handle = null;
    openChannels.delete(this);
    // detach the views first: a view over unmapped memory would crash the process
    this.#bytes = null;
    this.#buffer.transfer(0);
    this.#polledBuffer.transfer(0);
    this.#claimedBuffer.transfer(0);
    this.#blockTable?.transfer(0);
    lib.psy_close(handle);
    debug(this.uri, "closed");
    sweepSoon();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Opens a channel: the first opener creates it, later openers attach.
 *   createChannel("ipc://sensor_data", 4 * 1024 * 1024, ChannelMode.SPSC)
 *   createChannel("ipc://sensor_data", { bufferSize, mode, permissions, open, role })
 */
export function createChannel(uri: string, bufferSize?: number, mode?: ChannelMode): Channel;
export function createChannel(uri: string, options?: ChannelOptions): Channel;
export function createChannel(uri: string, sizeOrOptions?: number | ChannelOptions, mode?: ChannelMode): Channel {
  if (typeof sizeOrOptions === "object" && sizeOrOptions !== null) return new Channel(uri, sizeOrOptions);
  return new Channel(uri, { bufferSize: sizeOrOptions, mode });
}

/** Removes a channel's segment by name or URI; true if it existed. Attached processes keep working. */
export function removeChannel(nameOrUri: string): boolean {
  const { scheme, name } = parseUri(nameOrUri.includes("://") ? nameOrUri : `ipc://${nameOrUri}`);
  if (scheme === "memory") return false; // no name to remove: it goes with its last handle, or with the process
  const rc = lib.psy_unlink(cstr(segmentName(scheme, name)));
  if (rc === 0) return true;
  if (rc === NativeCode.NOT_FOUND) return false;
  throw fromNative(rc, lastError());
}
