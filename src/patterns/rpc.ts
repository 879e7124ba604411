// Request-response over channels. Requests go to one MPMC channel (URI) that any number of
// servers take from; each client has its own MPSC reply channel (URI.r.ID, ID unguessable), so
// a reply reaches only the client that asked. A server releases a request only after its reply is
// sent: a server killed mid-request leaves it to be delivered again (clients drop duplicates), and
// a server closed mid-request gives it back.
import { randomBytes } from "node:crypto";
import { type Channel, ChannelMode, createChannel, parseUri, removeChannel } from "../core/channel";
import { decodeFrame, decodeValue, type Encoded, encodeFailure, encodeFrame, encodeValue, frameOutcome, textOf } from "./codec";
import { debug } from "../core/debug";
import { ChannelNotFoundError, MessageTooLargeError, PsyneError } from "../core/errors";
import type { Message } from "../core/messages";
import { setLongTimeout, type WaitOptions } from "../core/waiting";
import { describe, durationOption, integerOption, optionsObject, own, signalOption } from "./options";

const REQUEST = 0x31515250; // "PRQ1"
const REPLY = 0x31505250; // "PRP1"
const REPLY_TIMEOUT_MS = 5_000; // a client that does not read its replies for this long is gone
const CLOSE_TIMEOUT_MS = 3_000;

export interface ServeOptions {
  /** Requests handled at once by this server process (each holds its request until replied). */
  concurrency?: number | undefined;
  /** Bytes of the request channel, if this server creates it. */
  bufferSize?: number | undefined;
  /**
   * Milliseconds `close()` lets handlers in flight finish (default 3000; Infinity waits for them);
   * the requests of those still running then are given back to the channel for another server.
   */
  closeTimeout?: number | undefined;
}

export type Handler = (request: unknown) => unknown | Promise<unknown>;

const replyUri = (uri: string, client: string) => `${uri}.r.${client}`;

// A process that exits with handlers in flight gives their requests back first: this listener runs
// before the channel layer's own exit hook detaches everything (which would consume them).
const GIVE_BACK = Symbol("psyne.giveBack");
const openServers = new Set<Server>();
let exitHookInstalled = false;
function trackServer(server: Server): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.prependListener("exit", () => {
      for (const s of openServers) s[GIVE_BACK]();
    });
  }
  openServers.add(server);
}

/** One request loop: its own consumer handle, and the request it is handling. */
interface Lane {
  requests: Channel;
  current: { message: Message; abandoned: boolean } | null;
  /** Settles when the loop has stopped (or, if its handler outlived close(), was left behind). */
  done: Promise<void>;
}

export class Server {
  readonly uri: string;
  #handler: Handler;
  #closeTimeout: number;
  #lanes: Lane[] = [];
  #replies = new Map<string, Channel>();
  #sweep: ReturnType<typeof setInterval>;
  #stop = new AbortController(); // aborted by close(): wakes loops parked for a request
  #stopping = false; // close() has begun: take no more requests
  #closing: Promise<void> | null = null;

  constructor(uri: string, handler: Handler, options?: ServeOptions) {
    parseUri(uri);
    if (typeof handler !== "function") throw new PsyneError("INVALID_ARGUMENT", `serve(uri, handler) needs a handler function, got ${describe(handler)}`);
    const opts = optionsObject(options, "serve()");
    const concurrency = integerOption(opts, "concurrency", 1, 1, "serve()");
    const bufferSize = own(opts, "bufferSize");
    if (bufferSize !== undefined && typeof bufferSize !== "number")
      throw new PsyneError("INVALID_ARGUMENT", `serve(): bufferSize must be a number of bytes, got ${describe(bufferSize)}`);
    this.#closeTimeout = durationOption(opts, "closeTimeout", "serve()") ?? CLOSE_TIMEOUT_MS;
    this.uri = uri;
    this.#handler = handler;
    for (let i = 0; i < concurrency; i++) {
      let requests: Channel;
      try {
        requests = createChannel(uri, { mode: ChannelMode.MPMC, bufferSize, role: "consumer" });
      } catch (err) {
        for (const lane of this.#lanes) lane.requests.close();
        throw err;
      }
      const lane: Lane = { requests, current: null, done: Promise.resolve() };
      this.#lanes.push(lane);
    }
    for (const lane of this.#lanes) lane.done = this.#serve(lane);
    trackServer(this);
    // forget reply channels whose client has gone, so their segments can be removed
    this.#sweep = setInterval(() => this.#forgetGoneClients(), 2_000);
    this.#sweep.unref();
  }

  async #serve(lane: Lane): Promise<void> {
    const { requests } = lane;
    try {
      while (!this.#stopping) {
        let message = requests.receive();
        if (!message) {
          try {
            message = await requests.recv(undefined, { signal: this.#stop.signal });
          } catch (err) {
            if (this.#stopping) return; // close() woke us: take nothing more
            throw err;
          }
          if (!message) continue;
          if (this.#stopping) return this.#giveBack(lane, message); // taken as close() began
        }
        await this.#handle(lane, message);
      }
    } catch (err) {
      // closed under us (installSignalHandlers() on SIGTERM, say) is a stop, not a failure
      if (!this.#stopping && !requests.closed) console.error(`psyne: server ${this.uri} stopped: ${textOf((err as Error)?.message ?? err)}`);
    }
  }

  /** Runs the handler on one request and replies; the request is released only after that. */
  async #handle(lane: Lane, message: Message): Promise<void> {
    const frame = decodeFrame(REQUEST, message.bytes());
    if (!frame) {
      debug(this.uri, "skipped a message that is not a request");
      return message.release();
    }
    const { id, tag: client } = frame;
    const current = { message, abandoned: false };
    lane.current = current;
    let reply: Encoded;
    try {
      const request = decodeValue(frame.kind, frame.value);
      reply = encodeValue(await this.#handler(request));
    } catch (err) {
      reply = encodeFailure(err);
    }
    if (current.abandoned) return; // close() gave the request back: another server answers it
    await this.#reply(client, id, reply);
    lane.current = null;
    if (!current.abandoned) message.release();
  }

  /**
   * Sends a reply, or, if it cannot be sent (too large for the client's reply channel, say), a
   * failure saying why, so the caller's request rejects with a RemoteError. Never throws.
   */
  async #reply(client: string, id: number, reply: Encoded): Promise<void> {
    const channel = this.#replyChannel(client);
    if (!channel) return;
    try {
      await channel.sendAsync(encodeFrame(REPLY, id, "", reply), { timeout: REPLY_TIMEOUT_MS });
      return;
    } catch (err) {
      if (channel.closed) return debug(this.uri, `reply ${id} dropped: the server is closing`);
      if ((err as PsyneError).code === "CHANNEL_FULL") return debug(this.uri, `client ${client} reads no replies; reply ${id} dropped`);
      const why =
        err instanceof MessageTooLargeError
          ? new MessageTooLargeError(
              `reply of ${reply.bytes.byteLength} bytes does not fit the reply channel of ${channel.bufferSize} bytes (connect(uri, { bufferSize }) sets its size)`,
              err.size,
              err.maxSize,
            )
          : err;
      try {
        channel.send(encodeFrame(REPLY, id, "", encodeFailure(why)));
      } catch (failed) {
        debug(this.uri, `reply ${id} to ${client} dropped: ${textOf((failed as Error)?.message ?? failed)}`);
      }
    }
  }

  /** This client's reply channel, attached on first use; null if the client has gone. */
  #replyChannel(client: string): Channel | null {
    let channel = this.#replies.get(client);
    if (channel) return channel;
    try {
      channel = createChannel(replyUri(this.uri, client), { open: "attach", role: "producer" });
    } catch (err) {
      const why = err instanceof ChannelNotFoundError ? "is gone" : `cannot be reached (${textOf((err as Error)?.message ?? err)})`;
      debug(this.uri, `client ${client} ${why}; its reply is dropped`);
      return null;
    }
    this.#replies.set(client, channel);
    return channel;
  }

  /**
   * Gives a request back to the channel (a copy sent by a producer handle, then the original
   * released), so another server takes it. If it cannot be sent (the channel is full), its caller
   * gets a RemoteError saying the server closed without answering.
   */
  #giveBack(lane: Lane, message: Message): void {
    const bytes = message.bytes();
    try {
      const producer = createChannel(this.uri, { mode: ChannelMode.MPMC, open: "attach", role: "producer" });
      try {
        producer.send(bytes);
      } finally {
        producer.close();
      }
      debug(this.uri, "gave a request back on close");
    } catch (err) {
      const frame = decodeFrame(REQUEST, bytes);
      const why = new PsyneError("CHANNEL_CLOSED", `the server closed before answering and could not give the request back: ${textOf((err as Error)?.message ?? err)}`);
      const channel = frame && this.#replyChannel(frame.tag);
      try {
        if (frame && channel) channel.send(encodeFrame(REPLY, frame.id, "", encodeFailure(why)));
      } catch {}
    }
    message.release();
    lane.current = null;
  }

  #forgetGoneClients(): void {
    for (const [client, channel] of this.#replies) {
      try {
        if (channel.stats().processes.some((p) => p.alive && p.roles.includes("consumer"))) continue;
      } catch {}
      channel.close();
      this.#replies.delete(client);
    }
  }

  /**
   * Stops taking requests, lets handlers in flight finish (up to `closeTimeout` ms), gives the
   * requests of those still running back to the channel (another server takes them; their late
   * results are dropped), and detaches. Resolves when it is done.
   */
  close(): Promise<void> {
    if (!this.#closing) {
      this.#stopping = true;
      this.#closing = this.#close();
    }
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#stop.abort();
    clearInterval(this.#sweep);
    const finished = Promise.all(this.#lanes.map((lane) => lane.done));
    let cancel = () => {};
    const waited = new Promise<void>((resolve) => (cancel = setLongTimeout(resolve, this.#closeTimeout)));
    await Promise.race([finished, waited]);
    cancel();
    this[GIVE_BACK]();
    for (const channel of this.#replies.values()) channel.close(); // ends replies still being sent
    this.#replies.clear();
    await Promise.all(this.#lanes.map((lane) => lane.done));
    for (const lane of this.#lanes) lane.requests.close();
    openServers.delete(this);
  }

  /** Gives back the requests whose handlers are still running; they will reply nothing. */
  [GIVE_BACK](): void {
    for (const lane of this.#lanes) {
      const current = lane.current;
      if (!current || current.abandoned || lane.requests.closed) continue;
      current.abandoned = true;
      this.#giveBack(lane, current.message);
      lane.done = Promise.resolve();
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Starts close() without waiting for it (`using`); prefer `await using` or `await close()`. */
  [Symbol.dispose](): void {
    void this.close();
  }
}

/** Serves requests sent to `uri`: `handler(request)` returns (or resolves to) the reply. */
export function serve(uri: string, handler: Handler, options?: ServeOptions): Server {
  return new Server(uri, handler, options);
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/**
 * Receives frames of `magic` on `channel` while `pending` waits for some, settling each by its id
 * (a frame whose id waits for nothing, a duplicate or a late one, is dropped). Returns when nothing
 * is pending, so an idle client does not keep the process alive; a channel error rejects
 * everything pending.
 */
async function settleFrames(channel: Channel, magic: number, pending: Map<number, Pending>): Promise<void> {
  try {
    while (pending.size > 0 && !channel.closed) {
      const message = await channel.recv(undefined, { timeout: 1_000 });
      if (!message) continue;
      const frame = decodeFrame(magic, message.bytes());
      const waiting = frame && pending.get(frame.id);
      if (!frame || !waiting) continue;
      let outcome: ReturnType<typeof frameOutcome>;
      try {
        outcome = frameOutcome(frame);
      } catch (err) {
        waiting.reject(err); // a reply this side cannot decode fails its request only
        continue;
      }
      if (outcome.ok) waiting.resolve(outcome.value);
      else waiting.reject(outcome.error);
    }
  } catch (err) {
    if (!channel.closed) for (const p of [...pending.values()]) p.reject(err);
  }
}

export class Client {
  readonly uri: string;
  /** This client's id: its reply channel is URI.r.ID. */
  readonly id = randomBytes(12).toString("hex");
  #requests: Channel;
  #replies: Channel;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #pumping = false;

  constructor(uri: string, options?: { bufferSize?: number | undefined }) {
    parseUri(uri);
    const opts = optionsObject(options, "connect()");
    const bufferSize = own(opts, "bufferSize") ?? 1 << 20;
    if (typeof bufferSize !== "number")
      throw new PsyneError("INVALID_ARGUMENT", `connect(): bufferSize must be a number of bytes, got ${describe(bufferSize)}`);
    this.uri = uri;
    try {
      this.#requests = createChannel(uri, { mode: ChannelMode.MPMC, open: "attach", role: "producer" });
    } catch (err) {
      if (err instanceof ChannelNotFoundError) throw new ChannelNotFoundError(`no server for ${uri}: the channel does not exist (start serve("${uri}", ...) first)`);
      throw err;
    }
    try {
      this.#replies = createChannel(replyUri(uri, this.id), { mode: ChannelMode.MPSC, bufferSize, open: "create", role: "consumer" });
    } catch (err) {
      this.#requests.close();
      throw err;
    }
  }

  /**
   * Sends `data` (a JSON value, string, typed array or DataView) and resolves with the reply.
   * Rejects (never throws) with RemoteError if the handler threw or its reply could not be sent,
   * with a PsyneError (code TIMEOUT) after `timeout` ms (Infinity or none: no limit), with the
   * signal's reason on abort, and with a PsyneError (INVALID_ARGUMENT) for data that cannot be sent.
   */
  request(data: unknown, options?: WaitOptions): Promise<unknown> {
    let timeout: number | undefined;
    let signal: AbortSignal | undefined;
    let frame: Uint8Array;
    try {
      const opts = optionsObject(options, "request()");
      timeout = durationOption(opts, "timeout", "request()");
      signal = signalOption(opts, "request()");
      if (this.#requests.closed) throw new PsyneError("CHANNEL_CLOSED", `client of ${this.uri} is closed`);
      if (signal?.aborted) return Promise.reject(signal.reason);
      frame = encodeFrame(REQUEST, this.#nextId, this.id, encodeValue(data));
    } catch (err) {
      return Promise.reject(err);
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      let cancelTimer = () => {};
      const onAbort = () => settle(() => reject(signal!.reason));
      const settle = (action: () => void) => {
        if (!this.#pending.delete(id)) return;
        cancelTimer();
        signal?.removeEventListener("abort", onAbort);
        action();
      };
      this.#pending.set(id, { resolve: (v) => settle(() => resolve(v)), reject: (e) => settle(() => reject(e)) });
      if (timeout !== undefined) cancelTimer = setLongTimeout(() => settle(() => reject(this.#timeoutError(id, timeout))), timeout);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#requests.sendAsync(frame, { signal, timeout }).then(
        () => this.#pump(),
        (err) => settle(() => reject(err)),
      );
    });
  }

  #timeoutError(id: number, timeout: number): PsyneError {
    let serving = true;
    try {
      serving = this.#requests.stats().processes.some((p) => p.alive && p.roles.includes("consumer"));
    } catch {}
    return new PsyneError(
      "TIMEOUT",
      `request ${id} to ${this.uri} got no reply within ${timeout} ms${serving ? "" : " (no live server is attached)"}`,
    );
  }

  /** Receives replies while requests are pending. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    await settleFrames(this.#replies, REPLY, this.#pending);
    this.#pumping = false;
  }

  /** Rejects pending requests and detaches; removes this client's reply channel. */
  close(): void {
    if (this.#replies.closed) return;
    for (const p of [...this.#pending.values()]) p.reject(new PsyneError("CHANNEL_CLOSED", `client of ${this.uri} was closed`));
    this.#requests.close();
    this.#replies.close();
    // the reply channel is ours alone: unlink it even if a server still holds it open (late or
    // duplicate replies would otherwise keep it); a server then finds it gone and drops replies
    removeChannel(replyUri(this.uri, this.id));
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A client of the server(s) at `uri`; throws ChannelNotFoundError if none has ever served it. */
export function connect(uri: string, options?: { bufferSize?: number | undefined }): Client {
  return new Client(uri, options);
}
