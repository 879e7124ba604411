// Request-response over channels. Requests go to one MPMC channel (URI) that any number of
// servers take from; each client has its own MPSC reply channel (URI.r.ID, ID unguessable), so
// a reply reaches only the client that asked. A server releases a request only after its reply is
// sent: a server killed mid-request leaves it to be delivered again (clients drop duplicates).
import { randomBytes } from "node:crypto";
import { type Channel, ChannelMode, createChannel, parseUri, removeChannel } from "../core/channel";
import { decodeFrame, decodeValue, type Encoded, encodeFailure, encodeFrame, encodeValue, frameOutcome } from "./codec";
import { debug } from "../core/debug";
import { ChannelNotFoundError, PsyneError } from "../core/errors";
import type { WaitOptions } from "../core/waiting";

const REQUEST = 0x31515250; // "PRQ1"
const REPLY = 0x31505250; // "PRP1"
const REPLY_TIMEOUT_MS = 5_000; // a client that does not read its replies for this long is gone

export interface ServeOptions {
  /** Requests handled at once by this server process (each holds its request until replied). */
  concurrency?: number;
  /** Bytes of the request channel, if this server creates it. */
  bufferSize?: number;
}

export type Handler = (request: unknown) => unknown | Promise<unknown>;

const replyUri = (uri: string, client: string) => `${uri}.r.${client}`;

export class Server {
  readonly uri: string;
  #handler: Handler;
  #requests: Channel[] = [];
  #replies = new Map<string, Channel>();
  #sweep: ReturnType<typeof setInterval>;
  #closed = false;

  constructor(uri: string, handler: Handler, options: ServeOptions = {}) {
    parseUri(uri);
    if (typeof handler !== "function") throw new PsyneError("INVALID_ARGUMENT", "serve(uri, handler) needs a handler function");
    this.uri = uri;
    this.#handler = handler;
    const concurrency = options.concurrency ?? 1;
    for (let i = 0; i < concurrency; i++) {
      const requests = createChannel(uri, { mode: ChannelMode.MPMC, bufferSize: options.bufferSize, role: "consumer" });
      this.#requests.push(requests);
      void this.#serve(requests);
    }
    // forget reply channels whose client has gone, so their segments can be removed
    this.#sweep = setInterval(() => this.#forgetGoneClients(), 2_000);
    this.#sweep.unref();
  }

  async #serve(requests: Channel): Promise<void> {
    try {
      for await (const message of requests.messages()) {
        const frame = decodeFrame(REQUEST, message.bytes());
        if (!frame) {
          debug(this.uri, "skipped a message that is not a request");
          continue;
        }
        let reply: Encoded;
        try {
          reply = encodeValue(await this.#handler(decodeValue(frame.kind, frame.value)));
        } catch (err) {
          reply = encodeFailure(err);
        }
        await this.#reply(frame.tag, frame.id, reply);
        // the loop moving on releases the request: only now is it done
      }
    } catch (err) {
      if (!this.#closed) console.error(`psyne: server ${this.uri} stopped: ${(err as Error).message}`);
    }
  }

  async #reply(client: string, id: number, reply: Encoded): Promise<void> {
    let channel = this.#replies.get(client);
    if (!channel) {
      try {
        channel = createChannel(replyUri(this.uri, client), { open: "attach", role: "producer" });
      } catch (err) {
        if (err instanceof ChannelNotFoundError) return debug(this.uri, `client ${client} is gone; reply ${id} dropped`);
        throw err;
      }
      this.#replies.set(client, channel);
    }
    try {
      await channel.sendAsync(encodeFrame(REPLY, id, "", reply), { timeout: REPLY_TIMEOUT_MS });
    } catch (err) {
      if ((err as PsyneError).code !== "CHANNEL_FULL") throw err;
      debug(this.uri, `client ${client} reads no replies; reply ${id} dropped`);
    }
  }

  #forgetGoneClients(): void {
    for (const [client, channel] of this.#replies) {
      if (channel.stats().processes.some((p) => p.alive && p.roles.includes("consumer"))) continue;
      channel.close();
      this.#replies.delete(client);
    }
  }

  /** Stops taking requests; a request being handled is given back to the channel. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweep);
    for (const channel of this.#requests) channel.close();
    for (const channel of this.#replies.values()) channel.close();
    this.#replies.clear();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Serves requests sent to `uri`: `handler(request)` returns (or resolves to) the reply. */
export function serve(uri: string, handler: Handler, options?: ServeOptions): Server {
  return new Server(uri, handler, options);
}

export interface Pending {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/**
 * Receives frames of `magic` on `channel` while `pending` waits for some, settling each by its id
 * (a frame whose id waits for nothing, a duplicate or a late one, is dropped). Returns when nothing
 * is pending, so an idle client or pool does not keep the process alive; a channel error rejects
 * everything pending.
 */
export async function settleFrames(channel: Channel, magic: number, pending: Map<number, Pending>, onSettle?: (ok: boolean) => void): Promise<void> {
  try {
    while (pending.size > 0 && !channel.closed) {
      const message = await channel.recv(undefined, { timeout: 1_000 });
      if (!message) continue;
      const frame = decodeFrame(magic, message.bytes());
      const waiting = frame && pending.get(frame.id);
      if (!frame || !waiting) continue;
      const outcome = frameOutcome(frame);
      onSettle?.(outcome.ok);
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

  constructor(uri: string, options: { bufferSize?: number } = {}) {
    parseUri(uri);
    this.uri = uri;
    try {
      this.#requests = createChannel(uri, { mode: ChannelMode.MPMC, open: "attach", role: "producer" });
    } catch (err) {
      if (err instanceof ChannelNotFoundError) throw new ChannelNotFoundError(`no server for ${uri}: the channel does not exist (start serve("${uri}", ...) first)`);
      throw err;
    }
    this.#replies = createChannel(replyUri(uri, this.id), {
      mode: ChannelMode.MPSC,
      bufferSize: options.bufferSize ?? 1 << 20,
      open: "create",
      role: "consumer",
    });
  }

  /**
   * Sends `data` (a JSON value, string or typed array) and resolves with the reply. Rejects with
   * RemoteError if the handler threw, with a PsyneError (code TIMEOUT) after `timeout` ms, and
   * with the signal's reason on abort.
   */
  request(data: unknown, options: WaitOptions = {}): Promise<unknown> {
    const { timeout, signal } = options;
    if (this.#requests.closed) return Promise.reject(new PsyneError("CHANNEL_CLOSED", `client of ${this.uri} is closed`));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.#nextId++;
    const frame = encodeFrame(REQUEST, id, this.id, encodeValue(data));
    return new Promise((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => settle(() => reject(signal!.reason));
      const settle = (action: () => void) => {
        if (!this.#pending.delete(id)) return;
        if (timer) clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        action();
      };
      this.#pending.set(id, { resolve: (v) => settle(() => resolve(v)), reject: (e) => settle(() => reject(e)) });
      if (timeout !== undefined)
        timer = setTimeout(() => settle(() => reject(this.#timeoutError(id, timeout))), timeout);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#requests.sendAsync(frame, { signal, timeout }).then(
        () => this.#pump(),
        (err) => settle(() => reject(err)),
      );
    });
  }

  #timeoutError(id: number, timeout: number): PsyneError {
    const serving = this.#requests.stats().processes.some((p) => p.alive && p.roles.includes("consumer"));
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
export function connect(uri: string, options?: { bufferSize?: number }): Client {
  return new Client(uri, options);
}
