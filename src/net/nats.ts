// nats:// channels (SPEC.md "Beyond one machine"): a channel carried by a NATS server or cluster,
// through the official client (@nats-io/transport-node, @nats-io/jetstream), loaded on first use
// so that ipc:// users never load it. Shape: the user's handle sends into a local send ring and
// receives from a local receive ring (private memory:// rings, so every message type, wait and
// full/empty rule is the ring's own code); a send pump publishes records from the send ring and
// frees them only once the server confirmed them (a PONG after them, or a JetStream PubAck); a
// receive pump copies each NATS message into the receive ring once, and with `durable`
// acknowledges it to JetStream when the user released it.
import type { ConnectionOptions, Msg, MsgHdrs, NatsConnection, Status, Subscription } from "@nats-io/transport-node";
import type { Consumer, ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg, StreamConfig } from "@nats-io/jetstream";
import {
  type Channel,
  ChannelMode,
  type ChannelOptions,
  type ChannelStats,
  FAIL_WAITS,
  registerTransport,
  type Transport,
  TRANSPORT_HOOKS,
  WAKE,
} from "../core/channel";
import { describe, invalidArgument } from "../core/check";
import { debug } from "../core/debug";
import { ChannelConfigError, InvalidChannelNameError, MessageTooLargeError, PsyneError } from "../core/errors";
import { TypeId, typeById } from "../core/messages";
import { setLongTimeout, settledWithin, WaitKind, type WaitOptions } from "../core/waiting";
import { openLocalRing, positionReached, REC_HEADER, RingPort, recordSpan } from "./ring";
import { Waits } from "./waits";

// ---- wire format ------------------------------------------------------------------------------

/** The header naming a message's type; a message without it (any plain NATS client's) is a ByteVector. */
export const TYPE_HEADER = "Psyne-Type";
/** The type id: 1-255 psyne's built-in types, above that a defineMessage struct's hash of name and layout. */
export const TYPE_ID_HEADER = "Psyne-Type-Id";

// ---- limits and pacing ------------------------------------------------------------------------

/** Core NATS: records published before one PING/PONG confirms them all (the client then writes them in a few large writes). */
const BATCH_MESSAGES = 4096;
const BATCH_BYTES = 1 << 20;
/** Core NATS: confirmations outstanding at once, so that publishing goes on during a round trip. */
const BATCHES_IN_FLIGHT = 4;
/** Core NATS: milliseconds a trickle of messages waits for the PING that confirms it. */
const CONFIRM_DELAY_MS = 1;
/** JetStream: publishes awaiting their PubAck at once (refilled by halves, so that they leave in few writes). */
const JS_IN_FLIGHT = 256;
/** A durable consumer pulls at most this many messages per request (fewer when its ring has less room). */
const FETCH_MAX = 1024;
/** ...and in a work queue (SPMC, MPMC) this many, and no more while it holds as many: the others get their share. */
const WORK_QUEUE_FETCH = 32;
/** Milliseconds a pull request waits at the server for messages. */
const FETCH_EXPIRES = 5000;
/** Retry pacing after a failed JetStream publish, pull or setup. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 2000;
/** Milliseconds a JetStream API call or publish waits for its answer. */
const JS_TIMEOUT_MS = 5000;
/** Milliseconds close() lets the connection drain before it closes it. */
const DRAIN_MS = 2000;
/** Messages one durable consumer (all its handles together) may hold unacknowledged. */
const MAX_ACK_PENDING = 10_000;
/** The JetStream stream psyne creates for a subject that no stream covers yet (README "Beyond one machine"). */
export const STREAM_DEFAULTS = {
  storage: "file",
  retention: "limits",
  discard: "old",
  maxBytes: 1 << 30, // 1 GiB
  maxAgeMs: 7 * 24 * 3600 * 1000, // 7 days
  duplicateWindowMs: 2 * 60 * 1000, // a resent message with the same id is stored once
} as const;

// ---- addresses --------------------------------------------------------------------------------

const TOKEN = "[A-Za-z0-9_\\-:=+@~!]+";
const SUBJECT_PATTERN = new RegExp(`^${TOKEN}(\\.${TOKEN})*$`);
const SERVER_PATTERN = /^(?:[^@/\s,]+@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/;
const DURABLE_PATTERN = /^[A-Za-z0-9_-]{1,200}$/;
const QUEUE_PATTERN = /^[A-Za-z0-9_\-:=+@~!.]{1,255}$/;

/** A URI or server list with any user:password@ or token@ replaced, for messages and logs. */
export const redact = (text: string): string => text.replace(/(^|\/\/|,)[^,/@\s]+@/g, "$1***@");

/** Splits the part of a nats:// URI after the scheme into its servers and its subject. */
export function parseNatsAddress(uri: string, address: string): { servers: string[]; subject: string } {
  const slash = address.indexOf("/");
  const hint = "expected nats://HOST:PORT/SUBJECT (several servers: nats://h1:4222,h2:4222/SUBJECT)";
  if (slash < 0) throw new InvalidChannelNameError(`invalid NATS channel URI '${redact(uri)}': no subject; ${hint}`);
  const hosts = address.slice(0, slash);
  const subject = address.slice(slash + 1);
  const servers = hosts === "" ? [] : hosts.split(",");
  for (const server of servers) {
    const match = SERVER_PATTERN.exec(server);
    const port = match?.[2] === undefined ? 4222 : Number(match[2]);
    if (!match || port < 1 || port > 65535)
      throw new InvalidChannelNameError(`invalid NATS server '${redact(server)}' in '${redact(uri)}': use HOST or HOST:PORT (port 1 to 65535); ${hint}`);
  }
  if (subject.length === 0 || subject.length > 255 || !SUBJECT_PATTERN.test(subject))
    throw new InvalidChannelNameError(
      `invalid NATS subject '${subject}' in '${redact(uri)}': use 1 to 255 characters, tokens of [A-Za-z0-9_-:=+@~!] separated by single dots ` +
        "(no wildcards * or >, no spaces, no empty token)",
    );
  return { servers: servers.map((s) => `nats://${s}`), subject };
}

interface Settings {
  /** The channel's URI with credentials hidden: what messages and logs show. */
  uri: string;
  subject: string;
  mode: ChannelMode;
  bufferSize: number | undefined;
  durable: string | undefined;
  queue: string | undefined;
  ackWait: number;
  role: "producer" | "consumer" | undefined;
  connection: ConnectionOptions;
}

const MODES = ["SPSC", "MPSC", "SPMC", "MPMC", "BROADCAST"];
const notForNats: Array<[keyof ChannelOptions, string]> = [
  ["listen", "a NATS channel connects to its servers"],
  ["auth", "pass NATS credentials as nats: { token } or nats: { user, pass }"],
  ["tls", "pass TLS options as nats: { tls: { ca, cert, key } }"],
  ["reconnect", "pass nats: { reconnect: false } or nats: { maxReconnectAttempts }"],
  ["peerTimeout", "the server tracks its clients"],
  ["permissions", "a NATS channel has no file"],
];

function settingsOf(uri: string, address: string, options: ChannelOptions): Settings {
  const { servers, subject } = parseNatsAddress(uri, address);
  for (const [key, why] of notForNats)
    if (options[key] !== undefined) throw new ChannelConfigError(`option ${key} does not apply to ${redact(uri)}: ${why}`);
  if (options.open !== undefined && options.open !== "create-or-attach")
    throw new ChannelConfigError(`open: ${describe(options.open)} does not apply to ${redact(uri)}: a NATS subject needs no creating`);
  const mode = options.mode ?? "SPSC";
  if (typeof mode !== "string" || !MODES.includes(mode))
    throw new PsyneError("INVALID_ARGUMENT", `unknown channel mode ${describe(mode)}: use one of ${MODES.join(", ")}`);
  const nats = options.nats ?? {};
  if (typeof nats !== "object" || nats === null || Array.isArray(nats))
    throw invalidArgument("nats", "an object of NATS connection options ({ servers, token, user, pass, tls, ... })", options.nats);
  const { durable, queue, ackWait = 30_000, role } = options;
  if (durable !== undefined && (typeof durable !== "string" || !DURABLE_PATTERN.test(durable)))
    throw invalidArgument("durable", "a consumer name of 1 to 200 of [A-Za-z0-9_-]", durable);
  if (queue !== undefined) {
    if (typeof queue !== "string" || !QUEUE_PATTERN.test(queue)) throw invalidArgument("queue", "a queue group name of 1 to 255 of [A-Za-z0-9_-:=+@~!.]", queue);
    if (mode !== "SPMC" && mode !== "MPMC")
      throw new ChannelConfigError(`queue applies to SPMC and MPMC consumers, not ${mode}: in ${mode} every subscriber gets every message`);
    if (durable !== undefined)
      throw new ChannelConfigError(`queue and durable together on ${redact(uri)}: the handles of one durable consumer already share its messages`);
  }
  if (typeof ackWait !== "number" || !Number.isInteger(ackWait) || ackWait < 1 || ackWait > 2 ** 31 - 1)
    throw invalidArgument("ackWait", "whole milliseconds from 1 to 2^31-1", ackWait);
  if (role !== undefined && role !== "producer" && role !== "consumer") throw invalidArgument("role", '"producer" or "consumer"', role);
  const extra = (nats as { servers?: unknown }).servers;
  if (extra !== undefined && typeof extra !== "string" && !(Array.isArray(extra) && extra.every((s) => typeof s === "string")))
    throw invalidArgument("nats.servers", "a server URL or an array of them", extra);
  const all = [...servers, ...(extra === undefined ? [] : typeof extra === "string" ? [extra] : (extra as string[]))];
  const connection: ConnectionOptions = {
    name: `psyne ${subject}`,
    maxReconnectAttempts: -1, // reconnect by itself, for as long as the channel is open
    reconnectTimeWait: 250,
    ...(nats as ConnectionOptions),
    ...(all.length ? { servers: [...new Set(all)] } : {}),
  };
  return {
    uri: redact(uri),
    subject,
    mode: mode as ChannelMode,
    bufferSize: options.bufferSize,
    durable,
    queue: mode === "SPMC" || mode === "MPMC" ? (queue ?? subject) : undefined,
    ackWait,
    role,
    connection,
  };
}

// ---- the client, loaded on first use ----------------------------------------------------------

type Core = typeof import("@nats-io/transport-node");
type Js = typeof import("@nats-io/jetstream");
let coreLoading: Promise<Core> | null = null;
let jsLoading: Promise<Js> | null = null;

function missingClient(error: unknown): PsyneError {
  return new PsyneError(
    "NATS_CLIENT",
    `nats:// channels need the official NATS client: bun add @nats-io/transport-node @nats-io/jetstream (${(error as Error).message})`,
  );
}
const loadCore = (): Promise<Core> =>
  (coreLoading ??= import("@nats-io/transport-node").catch((error) => {
    coreLoading = null;
    throw missingClient(error);
  }));
const loadJs = (): Promise<Js> =>
  (jsLoading ??= import("@nats-io/jetstream").catch((error) => {
    jsLoading = null;
    throw missingClient(error);
  }));

// ---- helpers ----------------------------------------------------------------------------------

function fnv1a(text: string): string {
  let hash = 2166136261;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619);
  return (hash >>> 0).toString(16).padStart(8, "0");
}

/** The stream psyne creates for `subject` when none covers it (names cannot hold dots). */
export const streamNameFor = (subject: string): string => `psyne-${subject.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 200)}-${fnv1a(subject)}`;

const message = (error: unknown): string => (error instanceof Error ? error.message : String(error));
const sleep = (ms: number, timers: Set<() => void>) =>
  new Promise<void>((resolve) => {
    const cancel = setLongTimeout(() => {
      timers.delete(stop);
      resolve();
    }, ms);
    const stop = () => {
      cancel();
      resolve();
    };
    timers.add(stop);
  });

/** A received durable message in the receive ring, acknowledged once the user released it. */
interface Held {
  end: number; // where its record ends in the receive ring
  msg: JsMsg; // its latest delivery (a redelivery of a message we hold replaces it)
  seq: number;
}

/** A message that arrived while the receive ring was full. */
interface Waiting {
  typeId: number;
  data: Uint8Array;
  js: JsMsg | null;
}

/** JetStream publishes awaiting their PubAck, in ring order. */
interface Publish {
  end: number;
  done: boolean;
}

// ---- the transport ----------------------------------------------------------------------------

class NatsTransport implements Transport {
  readonly mode: ChannelMode;
  readonly bufferSize: number;
  readonly #s: Settings;
  readonly #tx: Channel; // the user's handle sends into this ring...
  readonly #txPump: RingPort; // ...and the send pump reads it here
  readonly #rx: Channel; // the user's handle receives from this ring...
  readonly #rxPump: RingPort; // ...and the receive pump fills it here

  #nc: NatsConnection | null = null;
  #core: Core | null = null;
  #js: JetStreamClient | null = null;
  #jsm: JetStreamManager | null = null;
  #jsApi: Js | null = null;
  #stream: string | null = null;
  #connected = false;
  #streamReady = false; // durable: the stream exists (producers may publish)
  #closed = false;
  #ringsClosed = false; // the pumps' handles, after close() finished
  #failure: PsyneError | null = null;
  #waits = new Waits();
  #timers = new Set<() => void>(); // pending retry sleeps, cancelled at close
  #server = "";
  #reconnects = 0;
  #lastError: string | null = null;

  // send pump
  #pumpQueued = false;
  #generation = 0; // bumped by every rewind: confirmations of an older generation count for nothing
  #batches = 0; // core: confirmations (PONGs) outstanding
  #unconfirmedCount = 0; // core: published since the last PING
  #unconfirmedBytes = 0;
  #unconfirmedEnd = -1;
  #confirmTimer: ReturnType<typeof setTimeout> | null = null;
  #flushTarget = 0; // records a flush() (or close) waits for: confirm at once until they are
  #publishes: Publish[] = []; // JetStream: in ring order
  #jsInFlight = 0;
  #retryAt = 0;
  #retryDelay = RETRY_MIN_MS;
  #producerId = `${process.pid.toString(36)}${Math.random().toString(36).slice(2, 10)}`; // JetStream message ids: this handle's, then a count
  #releasedSeq = 0; // JetStream: records released so far (message ids count from here)
  #nextSeq = 0;
  #published = 0;
  #acknowledged = 0; // records the server confirmed (flush() waits for these)
  #tooLarge = 0;
  #sendError: PsyneError | null = null; // a record the server refused for good: flush() reports it once

  // the pumps wake the user's waits on the local rings themselves (same thread)
  #wakeTx: (kind: WaitKind) => void;
  #wakeRx: (kind: WaitKind) => void;

  // receive pump
  #consumerWanted = false;
  #subscribed = false; // the subscription (or the first pull) is registered with the server
  #sub: Subscription | null = null;
  #consumer: Consumer | null = null;
  #fetch: ConsumerMessages | null = null;
  #fetching = false;
  #held: Held[] = []; // durable: in the receive ring, not yet released
  #heldBySeq = new Map<number, Held>();
  #overflow: Waiting[] = [];
  #overflowBytes = 0;
  #overflowLimit: number;
  #largest: number; // payload bytes of the largest message the receive ring takes
  #acksWaiting: JsMsg[] = []; // acknowledgements held while disconnected
  #releaseQueued = false;
  #roomWaiters: Array<() => void> = [];
  #avgSpan = 256;
  #delivered = 0;
  #dropped = 0;
  #malformed = 0;
  #redelivered = 0;

  constructor(settings: Settings) {
    this.#s = settings;
    this.mode = settings.mode;
    const tag = `nats-${settings.subject}`;
    this.#tx = openLocalRing(settings.uri, `${tag}.tx`, settings.bufferSize, ChannelMode.SPSC, "producer");
    try {
      this.#rx = openLocalRing(settings.uri, `${tag}.rx`, settings.bufferSize, ChannelMode.SPSC, "consumer");
    } catch (error) {
      this.#tx.close();
      throw error;
    }
    this.#txPump = new RingPort(this.#tx, "consumer");
    this.#rxPump = new RingPort(this.#rx, "producer");
    this.bufferSize = this.#tx.bufferSize;
    this.#overflowLimit = this.bufferSize;
    this.#largest = this.bufferSize - REC_HEADER;
    this.#tx[TRANSPORT_HOOKS](this.#sent, null);
    this.#rx[TRANSPORT_HOOKS](null, this.#onRelease);
    this.#wakeTx = (kind) => this.#tx[WAKE](kind); // the pump wakes waits on its rings itself
    this.#wakeRx = (kind) => this.#rx[WAKE](kind);
    if (settings.role === "consumer") this.#consumerWanted = true;
    debug(settings.uri, `opening (${settings.mode}${settings.durable ? `, durable ${settings.durable}` : ""})`);
    this.#start().catch((error) => this.#fail(error));
  }

  get closed(): boolean {
    return this.#closed;
  }

  // ---- opening ------------------------------------------------------------------------------

  async #start(): Promise<void> {
    const core = await loadCore();
    if (this.#closed) return;
    this.#core = core;
    let nc: NatsConnection;
    try {
      nc = await core.connect(this.#s.connection);
    } catch (error) {
      const servers = redact([this.#s.connection.servers ?? "127.0.0.1:4222"].flat().join(","));
      throw new PsyneError(
        "CONNECTION_FAILED",
        `${this.#s.uri}: cannot connect to NATS at ${servers}: ${message(error)} ` +
          "(is nats-server running there? To wait for it instead, pass nats: { waitOnFirstConnect: true })",
      );
    }
    if (this.#closed) return void nc.close();
    this.#nc = nc;
    this.#server = nc.getServer();
    this.#watchStatus(nc);
    nc.closed().then((error) => {
      if (!this.#closed) this.#fail(new PsyneError("CONNECTION_LOST", `${this.#s.uri}: the NATS connection closed${error ? `: ${message(error)}` : ""}`));
    });
    debug(this.#s.uri, `connected to ${this.#server}`);
    if (this.#s.durable !== undefined) {
      if (!nc.info?.jetstream)
        throw new PsyneError(
          "JETSTREAM_UNAVAILABLE",
          `${this.#s.uri}: durable needs JetStream, which the NATS server at ${this.#server} does not offer: start nats-server with -js (JetStream enabled)`,
        );
      await this.#setUpStream();
      if (this.#closed) return;
    }
    this.#connected = true;
    this.#waits.check();
    if (this.#consumerWanted) this.#subscribe();
    this.#kick();
  }

  /** The stream that stores the subject: one that covers it already, else one psyne creates. */
  async #setUpStream(): Promise<void> {
    const js = await loadJs();
    const nc = this.#nc!;
    this.#jsApi = js;
    for (let attempt = 0; ; attempt++) {
      try {
        // probe with a short timeout first: a new cluster's JetStream answers a second or so after it starts
        await js.jetstreamManager(nc, { timeout: Math.min(JS_TIMEOUT_MS, 500 * 2 ** attempt) });
        this.#jsm ??= await js.jetstreamManager(nc, { timeout: JS_TIMEOUT_MS, checkAPI: false });
        this.#js ??= js.jetstream(nc, { timeout: JS_TIMEOUT_MS });
        this.#stream = await this.#ensureStream();
        this.#streamReady = true;
        return;
      } catch (error) {
        if (this.#closed || attempt >= 20) throw this.#jetStreamError(error);
        this.#note(`JetStream not ready yet: ${message(error)}`);
        await sleep(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** attempt), this.#timers);
        if (this.#closed) return;
      }
    }
  }

  async #ensureStream(): Promise<string> {
    const jsm = this.#jsm!;
    const { subject } = this.#s;
    try {
      return await jsm.streams.find(subject);
    } catch (error) {
      if (!/no stream matches/i.test(message(error))) throw error;
    }
    const core = this.#core!;
    const name = streamNameFor(subject);
    // in a cluster, three copies: the stream survives the loss of a server
    let replicas = this.#nc!.info?.cluster ? 3 : 1;
    const config: Partial<StreamConfig> & { name: string } = {
      name,
      subjects: [subject],
      storage: STREAM_DEFAULTS.storage as StreamConfig["storage"],
      retention: STREAM_DEFAULTS.retention as StreamConfig["retention"],
      discard: STREAM_DEFAULTS.discard as StreamConfig["discard"],
      max_bytes: STREAM_DEFAULTS.maxBytes,
      max_age: core.nanos(STREAM_DEFAULTS.maxAgeMs),
      max_msgs: -1,
      duplicate_window: core.nanos(STREAM_DEFAULTS.duplicateWindowMs),
      num_replicas: replicas,
    };
    try {
      try {
        await jsm.streams.add(config);
      } catch (error) {
        if (replicas === 1 || !/insufficient resources|replicas/i.test(message(error))) throw error;
        replicas = config.num_replicas = 1; // a cluster of fewer than three JetStream servers
        await jsm.streams.add(config);
      }
    } catch (error) {
      // another process created it meanwhile (the same config is accepted twice; a different one is not)
      try {
        return await jsm.streams.find(subject);
      } catch {
        throw error;
      }
    }
    debug(this.#s.uri, `created JetStream stream ${name} (${replicas} replica${replicas === 1 ? "" : "s"})`);
    return name;
  }

  #jetStreamError(error: unknown): PsyneError {
    if (error instanceof PsyneError) return error;
    const text = message(error);
    if (/jetstream is not enabled|no responders|timeout/i.test(text))
      return new PsyneError(
        "JETSTREAM_UNAVAILABLE",
        `${this.#s.uri}: JetStream does not answer at ${this.#server} (${text}): the server needs -js, and a cluster a JetStream quorum`,
      );
    return new PsyneError("JETSTREAM", `${this.#s.uri}: JetStream refused: ${text}`);
  }

  #watchStatus(nc: NatsConnection): void {
    (async () => {
      for await (const status of nc.status() as AsyncIterable<Status>) {
        if (status.type === "disconnect") {
          this.#connected = false;
          this.#note(`disconnected from ${status.server}`);
        } else if (status.type === "reconnect") {
          this.#reconnects++;
          this.#server = status.server;
          this.#note(`reconnected to ${status.server}`);
          this.#onReconnect();
        } else if (status.type === "error") {
          this.#note(`server error: ${message(status.error)}`);
        }
      }
    })().catch(() => {});
  }

  /** After a reconnect: resend everything not confirmed, send the held acknowledgements, pull again. */
  #onReconnect(): void {
    if (this.#closed || this.#nc === null) return;
    if (this.#s.durable !== undefined && !this.#streamReady) return; // #start() goes on by itself
    this.#connected = true;
    this.#rewind();
    this.#retryAt = 0;
    const acks = this.#acksWaiting;
    this.#acksWaiting = [];
    for (const m of acks) m.ack();
    this.#fetch?.stop(); // a restarted server forgot our pull request: make a new one
    this.#waits.check();
    this.#kick();
  }

  #note(event: string): void {
    this.#lastError = event;
    debug(this.#s.uri, event);
  }

  /** The connection failed for good: every wait and every later call gets `error`. */
  #fail(error: unknown): void {
    if (this.#closed || this.#failure) return;
    const failure =
      error instanceof PsyneError ? error : new PsyneError("CONNECTION_FAILED", `${this.#s.uri}: ${message(error)}`);
    this.#failure = failure;
    this.#lastError = failure.message;
    debug(this.#s.uri, `failed: ${failure.message}`);
    this.#waits.rejectAll(failure);
    this.#tx[FAIL_WAITS](failure);
    this.#rx[FAIL_WAITS](failure);
    this.#stopTimers();
    this.#nc?.close().catch(() => {});
  }

  // ---- the Transport interface --------------------------------------------------------------

  sender(): Channel {
    if (this.#failure) throw this.#failure;
    return this.#tx;
  }

  receiver(): Channel {
    if (this.#failure) throw this.#failure;
    if (!this.#consumerWanted) {
      this.#consumerWanted = true;
      if (this.#connected) this.#subscribe();
    }
    return this.#rx;
  }

  /** Connected (a durable producer: and the stream exists); a consumer: and its subscription is registered. */
  ready(options: WaitOptions): Promise<void> {
    return this.#until(
      () => this.#connected && (!this.#consumerWanted || this.#subscribed),
      options,
      () => `ready() of ${this.#s.uri} timed out after ${options.timeout} ms: ${this.#connected ? "the subscription is not registered yet" : "not connected"}${this.#lastError ? ` (${this.#lastError})` : ""}`,
    );
  }

  /** Everything this handle sent so far is confirmed by the server (stored by JetStream, with durable). */
  async flush(options: WaitOptions): Promise<void> {
    if (this.#closed) throw new PsyneError("CHANNEL_CLOSED", `channel ${this.#s.uri} is closed`);
    const target = this.#tx.stats().messagesSent;
    if (target > this.#flushTarget) {
      this.#flushTarget = target; // confirm at once, not a millisecond later
      this.#kick();
    }
    const sendError = this.#sendError;
    this.#sendError = null;
    if (sendError) throw sendError;
    await this.#until(
      () => this.#acknowledged >= target,
      options,
      () =>
        `flush() of ${this.#s.uri} timed out after ${options.timeout} ms: ${target - this.#acknowledged} message(s) not confirmed by the server yet` +
        `${this.#connected ? "" : " (disconnected)"}${this.#lastError ? `; last event: ${this.#lastError}` : ""}`,
    );
    const late = this.#sendError as PsyneError | null;
    this.#sendError = null;
    if (late) throw late;
  }

  #until(test: () => boolean, options: WaitOptions, timeoutMessage: () => string): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new PsyneError("CHANNEL_CLOSED", `channel ${this.#s.uri} is closed`));
    return this.#waits.until(test, options, timeoutMessage);
  }

  stats(): ChannelStats {
    if (this.#closed) throw new PsyneError("CHANNEL_CLOSED", `channel ${this.#s.uri} is closed`);
    const tx = this.#tx.stats();
    const rx = this.#rx.stats();
    const roles: Array<"producer" | "consumer"> = [];
    if (tx.messagesSent > 0 || this.#s.role === "producer") roles.push("producer");
    if (this.#consumerWanted) roles.push("consumer");
    return {
      mode: this.mode,
      capacity: this.bufferSize,
      bytesInUse: tx.bytesInUse + rx.bytesInUse,
      messagesSent: tx.messagesSent,
      bytesSent: tx.bytesSent,
      messagesReceived: rx.messagesReceived,
      bytesReceived: rx.bytesReceived,
      fullEvents: tx.fullEvents + rx.fullEvents,
      processes: [{ slot: 0, pid: process.pid, roles, alive: true, self: true, messagesSent: tx.messagesSent, messagesReceived: rx.messagesReceived }],
      network: {
        transport: "nats",
        subject: this.#s.subject,
        server: this.#server || null,
        connected: this.#connected,
        durable: this.#s.durable ?? null,
        stream: this.#stream,
        reconnects: this.#reconnects,
        published: this.#published,
        acknowledged: this.#acknowledged,
        unacknowledged: tx.messagesSent - this.#acknowledged,
        delivered: this.#delivered,
        redelivered: this.#redelivered,
        waiting: this.#overflow.length,
        dropped: this.#dropped,
        malformed: this.#malformed,
        tooLarge: this.#tooLarge,
        lastEvent: this.#lastError,
        failed: this.#failure?.message ?? null,
      },
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#ackReleased(); // what the user released just now is acknowledged, not given back
    // at process exit the local rings may have been closed first (closeAllChannels): then nothing is left to send
    const sent = this.#tx.closed ? this.#acknowledged : this.#tx.stats().messagesSent;
    this.#closed = true;
    const closing = new PsyneError("CHANNEL_CLOSED", `channel ${this.#s.uri} was closed while waiting`);
    this.#waits.rejectAll(closing);
    this.#rx[FAIL_WAITS](closing);
    this.#tx[FAIL_WAITS](closing);
    this.#tx.close(); // committed records stay in the ring for the pump's handle
    this.#rx.close();
    this.#stopTimers();
    debug(this.#s.uri, "closing");
    this.#finish(sent).catch((error) => debug(this.#s.uri, `closing: ${message(error)}`));
  }

  /** After close(): the rest of the send ring goes out and is confirmed, unreleased messages go back, then the connection drains. */
  async #finish(sent: number): Promise<void> {
    const nc = this.#nc;
    this.#flushTarget = sent;
    try {
      this.#fetch?.stop();
      this.#giveBack();
      if (nc && !nc.isClosed() && this.#connected && !this.#failure) {
        // bounded: a server that stops answering must not keep the process alive for ever
        const deadline = performance.now() + 10_000;
        while (this.#acknowledged < sent && this.#connected && !nc.isClosed() && performance.now() < deadline) {
          this.#pump();
          await Bun.sleep(5);
        }
        if (this.#acknowledged < sent) debug(this.#s.uri, `closed with ${sent - this.#acknowledged} message(s) not confirmed by the server`);
        // flushes what the client holds, unsubscribes, closes; bounded, like the wait above
        await settledWithin(nc.drain(), DRAIN_MS);
      }
      if (nc && !nc.isClosed()) await nc.close();
    } finally {
      if (this.#confirmTimer !== null) clearTimeout(this.#confirmTimer);
      this.#ringsClosed = true;
      this.#txPump.close();
      this.#rxPump.close();
      debug(this.#s.uri, "closed");
    }
  }

  #stopTimers(): void {
    for (const stop of [...this.#timers]) stop();
    this.#timers.clear();
    for (const wake of this.#roomWaiters.splice(0)) wake();
  }

  // ---- send pump ----------------------------------------------------------------------------

  /**
   * Something changed (a confirmation came, a retry is due): pump once the current job is done.
   * The user's sends (#sent) pump the first message of a job at once, for latency, and the rest at
   * its end; the client only buffers a publish and writes its buffer once per job (or every 32 KiB).
   */
  #kick = (): void => {
    if (this.#pumpQueued) return;
    this.#pumpQueued = true;
    queueMicrotask(this.#pumpSoon);
  };
  #sent = (): void => {
    if (this.#pumpQueued || this.#closed) return;
    this.#pumpQueued = true;
    queueMicrotask(this.#pumpSoon); // the rest of this job's sends go out together at its end...
    this.#pump(); // ...the first leaves at once
  };
  #pumpSoon = (): void => {
    this.#pumpQueued = false;
    if (!this.#closed) this.#pump();
  };

  #pump(): void {
    const nc = this.#nc;
    if (!this.#connected || nc === null || this.#failure || nc.isClosed()) return; // records wait in the ring
    if (this.#retryAt !== 0 && performance.now() < this.#retryAt) return;
    try {
      if (this.#s.durable !== undefined) this.#pumpJetStream();
      else this.#pumpCore(nc);
    } catch (error) {
      this.#fail(error);
    }
  }

  /**
   * Core NATS: publish what the send ring holds, then one PING whose PONG confirms everything before
   * it. The PING goes at once for a full batch, when flush() waits or the ring is half full;
   * otherwise a millisecond later, so that a trickle of messages costs the server one PONG per
   * millisecond, not one per message.
   */
  #pumpCore(nc: NatsConnection): void {
    const ring = this.#txPump;
    while (this.#batches < BATCHES_IN_FLIGHT) {
      let polled = false;
      while (this.#unconfirmedCount < BATCH_MESSAGES && this.#unconfirmedBytes < BATCH_BYTES && ring.next() >= 0) {
        polled = true;
        const payload = ring.payload();
        const headers = this.#headersFor(ring.type);
        try {
          if (headers) nc.publish(this.#s.subject, payload, { headers });
          else nc.publish(this.#s.subject, payload);
          this.#published++;
        } catch (error) {
          this.#refused(error, payload.byteLength);
        }
        this.#unconfirmedCount++;
        this.#unconfirmedBytes += payload.byteLength;
      }
      if (polled) this.#unconfirmedEnd = ring.end(); // the last record polled
      if (this.#unconfirmedCount === 0) return;
      const full = this.#unconfirmedCount >= BATCH_MESSAGES || this.#unconfirmedBytes >= BATCH_BYTES;
      if (!full && this.#flushTarget <= this.#acknowledged && (this.#confirmTimer !== null || ring.used() < this.bufferSize / 2)) {
        this.#confirmTimer ??= setTimeout(this.#confirmLater, CONFIRM_DELAY_MS);
        return;
      }
      this.#confirm(nc);
    }
  }

  #confirmLater = (): void => {
    this.#confirmTimer = null;
    const nc = this.#nc;
    if (this.#connected && nc !== null && !nc.isClosed() && this.#unconfirmedCount > 0 && this.#batches < BATCHES_IN_FLIGHT) this.#confirm(nc);
  };

  /** Asks the server to confirm everything published so far (a PING: its PONG comes after them). */
  #confirm(nc: NatsConnection): void {
    if (this.#confirmTimer !== null) clearTimeout(this.#confirmTimer);
    this.#confirmTimer = null;
    const end = this.#unconfirmedEnd;
    const count = this.#unconfirmedCount;
    const generation = this.#generation;
    this.#unconfirmedCount = 0;
    this.#unconfirmedBytes = 0;
    this.#batches++;
    nc.flush().then(
      () => {
        if (generation !== this.#generation || this.#ringsClosed) return; // resent after a reconnect, or closed
        this.#batches--;
        this.#txPump.releaseTo(end);
        this.#wakeTx(WaitKind.Space);
        this.#acknowledged += count;
        this.#waits.check();
        this.#kick();
      },
      (error) => this.#unconfirmed(error, generation),
    );
  }

  /** A record the server can never take (larger than its max_payload): dropped, counted, reported by the next flush(). */
  #refused(error: unknown, bytes: number): void {
    this.#tooLarge++;
    const max = this.#nc?.info?.max_payload ?? 0;
    this.#sendError = new MessageTooLargeError(
      `a message of ${bytes} bytes on ${this.#s.uri} was dropped: the NATS server takes at most ${max} bytes per message (with headers): ${message(error)}`,
      bytes,
      max,
    );
    this.#note(this.#sendError.message);
  }

  /** JetStream: each record published with an id (the server drops a resent duplicate), freed in order once acknowledged. */
  #pumpJetStream(): void {
    if (this.#jsInFlight > JS_IN_FLIGHT / 2) return; // refill by halves: the publishes leave together
    const ring = this.#txPump;
    const js = this.#js!;
    while (this.#jsInFlight < JS_IN_FLIGHT && ring.next() >= 0) {
      const entry: Publish = { end: ring.end(), done: false };
      const payload = ring.payload();
      const typeId = ring.type;
      const generation = this.#generation;
      const msgID = `${this.#producerId}-${this.#nextSeq++}`;
      this.#publishes.push(entry);
      this.#jsInFlight++;
      this.#published++;
      const headers = this.#headersFor(typeId, true);
      js.publish(this.#s.subject, payload, headers ? { msgID, headers } : { msgID }).then(
        () => {
          if (generation !== this.#generation) return;
          this.#jsInFlight--;
          entry.done = true;
          this.#retryDelay = RETRY_MIN_MS;
          if (!this.#advanceQueued) {
            this.#advanceQueued = true; // acknowledgements come in bursts: free their records at once
            queueMicrotask(this.#advanceSoon);
          }
        },
        (error) => {
          if (generation !== this.#generation) return;
          if (error instanceof this.#core!.InvalidArgumentError) {
            // too large for the server: it can never be stored
            this.#jsInFlight--;
            entry.done = true;
            this.#refused(error, payload.byteLength);
            this.#advance();
            return;
          }
          this.#unconfirmed(error, generation);
        },
      );
    }
  }

  #advanceQueued = false;
  #advanceSoon = (): void => {
    this.#advanceQueued = false;
    this.#advance();
  };

  #advance(): void {
    if (this.#ringsClosed) return; // a late acknowledgement after close() finished
    let end = -1;
    let count = 0;
    const queue = this.#publishes;
    while (queue.length > 0 && queue[0]!.done) {
      end = queue.shift()!.end;
      count++;
    }
    if (count === 0) return;
    this.#txPump.releaseTo(end);
    this.#wakeTx(WaitKind.Space);
    this.#releasedSeq += count;
    this.#acknowledged += count;
    this.#waits.check();
    this.#kick();
  }

  /** A confirmation failed (disconnected, timed out, JetStream unavailable): resend from the first unconfirmed record, later. */
  #unconfirmed(error: unknown, generation: number): void {
    if (generation !== this.#generation || this.#closed) return;
    const text = message(error);
    this.#note(
      /jetstream is not enabled|no responders/i.test(text)
        ? `JetStream is not available for ${this.#s.subject} (${text}): no stream, or a cluster without its JetStream quorum; retrying`
        : `publish not confirmed (${text}); resending`,
    );
    this.#rewind();
    this.#retryAt = performance.now() + this.#retryDelay;
    const delay = this.#retryDelay;
    this.#retryDelay = Math.min(RETRY_MAX_MS, this.#retryDelay * 2);
    sleep(delay, this.#timers).then(async () => {
      if (this.#closed) return;
      if (this.#s.durable !== undefined && /jetstream is not enabled|no responders/i.test(text)) {
        // the stream may have been deleted: make it again (a missing JetStream fails again, and is retried)
        try {
          this.#stream = await this.#ensureStream();
        } catch (e) {
          this.#note(`stream check failed: ${message(e)}`);
        }
      }
      this.#retryAt = 0;
      this.#kick();
    });
  }

  /** Everything not confirmed is published again (JetStream drops what it already stored, by message id). */
  #rewind(): void {
    this.#generation++;
    this.#txPump.rewind();
    this.#batches = 0;
    this.#unconfirmedCount = 0;
    this.#unconfirmedBytes = 0;
    if (this.#confirmTimer !== null) clearTimeout(this.#confirmTimer);
    this.#confirmTimer = null;
    this.#publishes = [];
    this.#jsInFlight = 0;
    this.#nextSeq = this.#releasedSeq;
  }

  #headerCache = new Map<number, MsgHdrs>();
  /** The type headers of a record (none for bytes, so that a plain client's messages and ours look alike). */
  #headersFor(typeId: number, fresh = false): MsgHdrs | undefined {
    if (typeId === TypeId.ByteVector) return undefined;
    let headers = fresh ? undefined : this.#headerCache.get(typeId);
    if (!headers) {
      headers = this.#core!.headers();
      const name = typeById(typeId)?.typeName;
      if (name !== undefined) headers.set(TYPE_HEADER, name);
      headers.set(TYPE_ID_HEADER, String(typeId));
      if (!fresh) this.#headerCache.set(typeId, headers);
    }
    return headers;
  }

  // ---- receive pump -------------------------------------------------------------------------

  #subscribe(): void {
    const nc = this.#nc;
    if (nc === null || this.#closed || this.#failure || this.#sub || this.#fetching) return;
    if (this.#s.durable !== undefined) {
      this.#fetching = true;
      this.#pullLoop().catch((error) => this.#fail(error));
      return;
    }
    const queue = this.#s.queue;
    this.#sub = nc.subscribe(this.#s.subject, {
      ...(queue === undefined ? {} : { queue }),
      callback: (error, msg) => {
        if (error) this.#note(`subscription: ${message(error)}`);
        else this.#deliver(msg, null);
      },
    });
    nc.flush().then(
      () => {
        this.#subscribed = true;
        this.#waits.check();
      },
      () => {}, // disconnected first: the client subscribes again after the reconnect, and ready() waits for it
    );
  }

  /** The type a NATS message carries, or a reason it is malformed. */
  #typeOf(msg: Msg | JsMsg, length: number): number | string {
    const headers = msg.headers;
    const idText = headers?.get(TYPE_ID_HEADER);
    if (!idText) return TypeId.ByteVector; // a plain NATS client's message
    if (!/^[0-9]{1,10}$/.test(idText)) return `type id '${idText}' is not a number`;
    const id = Number(idText);
    if (id === 0 || id > 0xffffffff) return `type id ${id} is out of range`;
    const name = headers!.get(TYPE_HEADER);
    const known = typeById(id);
    if (known === undefined) return id < 256 ? `type id ${id} is no psyne type` : id; // a struct this process does not define: receive(T) says so
    if (name && name !== known.typeName) return `type id ${id} names ${name} there and ${known.typeName} here`;
    if (known.minBytes > 0 ? length !== known.minBytes : length % ((known as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1) !== 0)
      return `${length} bytes cannot be a ${known.typeName}`;
    return id;
  }

  /** One NATS message into the receive ring (one copy), or into the overflow while the ring is full. */
  #deliver(msg: Msg | JsMsg, js: JsMsg | null): void {
    if (this.#closed) return;
    const data = msg.data;
    if (js !== null) {
      const held = this.#heldBySeq.get(js.seq);
      if (held !== undefined) {
        // redelivered while we still hold it (ackWait passed): acknowledge the latest delivery
        held.msg = js;
        return;
      }
    }
    const typeId = this.#typeOf(msg, data.byteLength);
    if (typeof typeId === "string" || data.byteLength > this.#largest) {
      this.#malformed++;
      this.#note(
        `dropped a message on ${msg.subject}: ${typeof typeId === "string" ? typeId : `${data.byteLength} bytes do not fit the ${this.bufferSize}-byte receive ring`}`,
      );
      js?.term(); // never to be redelivered
      return;
    }
    if (this.#overflow.length === 0 && this.#write(typeId, data, js)) return;
    if (js === null && this.#overflowBytes + data.byteLength > this.#overflowLimit) {
      this.#dropped++; // core NATS is at-most-once: a consumer this far behind loses messages, as NATS's slow consumers do
      if (this.#dropped === 1 || this.#dropped % 1000 === 0) this.#note(`receive ring full: ${this.#dropped} message(s) dropped so far`);
      return;
    }
    this.#overflow.push({ typeId, data, js });
    this.#overflowBytes += data.byteLength;
  }

  #write(typeId: number, data: Uint8Array, js: JsMsg | null): boolean {
    if (!this.#rxPump.write(typeId, data, 0, data.byteLength)) return false;
    this.#delivered++;
    this.#wakeRx(WaitKind.Data); // a parked receive takes it now (its code runs in a microtask); nothing parked: no cost
    if (js !== null) {
      this.#avgSpan = this.#avgSpan * 0.9 + recordSpan(data.byteLength) * 0.1; // sizes the next pull
      if (js.redelivered) this.#redelivered++;
      const held = { end: this.#rxPump.committedEnd, msg: js, seq: js.seq };
      this.#held.push(held);
      this.#heldBySeq.set(js.seq, held);
    }
    return true;
  }

  /** The user released a message (or moved on): acknowledge what it passed, refill from the overflow. */
  #onRelease = (): void => {
    // the common case, one call per message: nothing held for an ack, nothing waiting for room
    if (this.#releaseQueued || (this.#held.length === 0 && this.#overflow.length === 0 && this.#roomWaiters.length === 0)) return;
    this.#releaseQueued = true;
    queueMicrotask(this.#released);
  };
  #released = (): void => {
    this.#releaseQueued = false;
    if (this.#closed) return;
    this.#ackReleased();
    while (this.#overflow.length > 0) {
      const next = this.#overflow[0]!;
      if (!this.#write(next.typeId, next.data, next.js)) break;
      this.#overflow.shift();
      this.#overflowBytes -= next.data.byteLength;
    }
    if (this.#roomWaiters.length > 0) for (const wake of this.#roomWaiters.splice(0)) wake();
  };

  #ackReleased(): void {
    if (this.#held.length === 0) return;
    const position = this.#rxPump.released();
    while (this.#held.length > 0 && positionReached(position, this.#held[0]!.end)) {
      const held = this.#held.shift()!;
      this.#heldBySeq.delete(held.seq);
      if (this.#connected) held.msg.ack();
      else this.#acksWaiting.push(held.msg); // an ack published while disconnected would be lost
    }
  }

  /** Durable: pull as many messages as the receive ring has room for, again and again. */
  async #pullLoop(): Promise<void> {
    const js = this.#js!;
    const stream = this.#stream!;
    let failures = 0;
    while (!this.#closed && !this.#failure) {
      if (!this.#connected) {
        await sleep(50, this.#timers);
        continue;
      }
      try {
        if (this.#consumer === null) {
          await this.#ensureConsumer(stream);
          this.#consumer = await js.consumers.get(stream, this.#s.durable!);
        }
        const room = this.bufferSize - this.#rxPump.used() - this.#overflowBytes;
        const workQueue = this.mode === "SPMC" || this.mode === "MPMC";
        if (this.#overflow.length > 0 || room < this.bufferSize / 4 || (workQueue && this.#held.length >= WORK_QUEUE_FETCH)) {
          await new Promise<void>((resolve) => this.#roomWaiters.push(resolve));
          continue;
        }
        const max = Math.max(1, Math.min(workQueue ? WORK_QUEUE_FETCH : FETCH_MAX, Math.floor(room / this.#avgSpan)));
        const batch = await this.#consumer.fetch({ max_messages: max, expires: FETCH_EXPIRES });
        this.#fetch = batch;
        if (!this.#subscribed) {
          await this.#nc!.flush(); // the pull request is at the server
          this.#subscribed = true;
          this.#waits.check();
        }
        for await (const m of batch) this.#deliver(m, m);
        failures = 0;
      } catch (error) {
        if (this.#closed) return;
        failures++;
        const text = message(error);
        this.#note(`pull from durable ${this.#s.durable}: ${text}`);
        if (/consumer not found|consumer is deleted|stream not found/i.test(text)) {
          this.#consumer = null; // make it again
          if (/stream not found/i.test(text)) this.#stream = await this.#ensureStream().catch(() => this.#stream);
        }
        await sleep(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(failures, 5)), this.#timers);
      } finally {
        this.#fetch = null;
      }
    }
  }

  /** The durable consumer: created if missing, its ackWait brought to this handle's. */
  async #ensureConsumer(stream: string): Promise<void> {
    const js = this.#jsApi!;
    const jsm = this.#jsm!;
    const durable = this.#s.durable!;
    const ackWait = this.#core!.nanos(this.#s.ackWait);
    try {
      const info = await jsm.consumers.info(stream, durable);
      if (info.config.ack_wait !== ackWait) await jsm.consumers.update(stream, durable, { ack_wait: ackWait });
      return;
    } catch (error) {
      if (!/consumer not found/i.test(message(error))) throw error;
    }
    await jsm.consumers.add(stream, {
      durable_name: durable,
      ack_policy: js.AckPolicy.Explicit,
      ack_wait: ackWait,
      deliver_policy: js.DeliverPolicy.All, // a new durable consumer starts with everything the stream holds
      filter_subject: this.#s.subject,
      max_deliver: -1,
      max_ack_pending: MAX_ACK_PENDING,
    });
    debug(this.#s.uri, `created durable consumer ${durable} on stream ${stream}`);
  }

  /** Closing: messages received but not released go back to the server at once (nak), for another consumer. */
  #giveBack(): void {
    if (!this.#connected) return; // the server gives them to another consumer after ackWait
    for (const held of this.#held) held.msg.nak();
    for (const waiting of this.#overflow) waiting.js?.nak();
    this.#held = [];
    this.#heldBySeq.clear();
    this.#overflow = [];
    this.#overflowBytes = 0;
    this.#sub?.unsubscribe();
  }
}

registerTransport("nats", (uri, address, options) => new NatsTransport(settingsOf(uri, address, options)));
