// udp:// channels (SPEC.md "Beyond one machine"): BROADCAST datagrams for data where a late
// message is worthless (sensor frames, game state). Best effort: no acknowledgement, no resend.
//
//   udp://HOST:PORT                     a sender: datagrams to HOST:PORT (a multicast group, or one receiver)
//   udp://HOST:PORT with listen: true   a receiver on HOST:PORT; a multicast HOST joins that group
//   udp://:PORT                         a receiver on every interface
//
// One message per datagram, little-endian (protocol version 1):
//    0  u32  magic "PSYD"
//    4  u16  version (1), u16 zero
//    8  u32  sender: random per channel handle
//   12  u32  sequence number of this sender's datagrams, from 1, modulo 2^32
//   16  u32  the message's type id
//   20       the message's bytes: the rest of the datagram
// A receiver keeps, per sender, the highest sequence number it delivered: a datagram after a gap is
// delivered and the gap counted in stats().lost; one that arrives after a later one is dropped and
// counted in stats().reordered (so a datagram counted lost may show up later as reordered). With no
// SO_REUSEADDR in Bun.udpSocket, one receiver per host and port.
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
import { PsyneError, ChannelRoleError } from "../core/errors";
import { layout } from "../core/layout";
import { WaitKind, type WaitOptions } from "../core/waiting";
import { checkDirectMode, type Endpoint, parseEndpoint } from "./address";
import { copyBytes, openLocalRing, REC_HEADER, RingPort } from "./ring";
import { Waits } from "./waits";
import { nextSeq, randomId } from "./wire";

export const DATAGRAM_MAGIC = 0x44595350; // "PSYD" read as a little-endian u32
export const DATAGRAM_VERSION = 1;
export const DATAGRAM_HEADER = 20;
/** The largest UDP payload over IPv4 (65535 - 8 UDP - 20 IP header bytes). */
const MAX_DATAGRAM = 65_507;
export const MAX_UDP_MESSAGE = MAX_DATAGRAM - DATAGRAM_HEADER;
/** Datagrams handed to the kernel per sendMany call, and the bytes they may fill. */
const BATCH = 64;
const BATCH_BYTES = 256 * 1024;
const MAX_SENDERS = 4096;

type UdpSocket = import("bun").udp.BaseUDPSocket;
type SendingSocket = import("bun").udp.ConnectedSocket<"uint8array">;

const isMulticast = (host: string): boolean => {
  const first = Number(host.split(".")[0]);
  return (/^\d+\.\d+\.\d+\.\d+$/.test(host) && first >= 224 && first <= 239) || /^ff[0-9a-f]{2}:/i.test(host);
};

class Sender {
  last = 0;
  messages = 0;
  bytes = 0;
  readonly since = Date.now();
  constructor(readonly address: string) {}
}

class UdpTransport implements Transport {
  readonly uri: string;
  readonly endpoint: Endpoint;
  readonly mode = ChannelMode.BROADCAST;
  readonly bufferSize: number;
  #options: ChannelOptions;
  #ring: Channel;
  #port: RingPort;
  #socket: UdpSocket | null = null;
  #out: SendingSocket | null = null; // the sender's socket
  #closed = false;
  #failure: PsyneError | null = null;
  #waits = new Waits();
  // sender
  readonly #id = new DataView(randomId().buffer).getUint32(0, true);
  #seq = 0;
  #sentEnd = 0;
  #pumpScheduled = false;
  #batch = new Uint8Array(BATCH_BYTES + MAX_DATAGRAM); // a batch stops past BATCH_BYTES: the last datagram still fits
  #batchView = new DataView(this.#batch.buffer);
  #sent = 0;
  // receiver
  #senders = new Map<number, Sender>();
  #lost = 0;
  #reordered = 0;
  #errors: Record<string, number> = {};
  #listening = "";

  constructor(uri: string, address: string, options: ChannelOptions) {
    this.uri = uri;
    this.#options = options;
    this.endpoint = parseEndpoint("udp", uri, address, options);
    checkDirectMode(uri, options.mode, [ChannelMode.BROADCAST]);
    const iface = options.multicastInterface;
    if (iface !== undefined && typeof iface !== "string") throw invalidArgument("multicastInterface", "an interface address such as 127.0.0.1", iface);
    const role = options.role;
    if (role !== undefined && role !== (this.endpoint.listen ? "consumer" : "producer"))
      throw new ChannelRoleError(`${uri}: a udp ${this.endpoint.listen ? "receiver" : "sender"} cannot take the ${role} role`);
    const listen = this.endpoint.listen;
    this.#ring = openLocalRing(uri, `udp-${this.endpoint.display}.${listen ? "rx" : "tx"}`, options.bufferSize ?? layout.DEFAULT_CAPACITY, ChannelMode.SPSC, listen ? "consumer" : "producer");
    this.bufferSize = this.#ring.bufferSize;
    this.#port = new RingPort(this.#ring, listen ? "producer" : "consumer");
    if (listen) {
      this.#ring[TRANSPORT_HOOKS](null, null);
    } else {
      this.#ring[MESSAGE_LIMIT](MAX_UDP_MESSAGE); // one message per datagram
      this.#ring[TRANSPORT_HOOKS](this.#afterSend, null);
      this.#sentEnd = this.#port.released();
    }
    this.#open().catch((error: Error) => this.#fail(new PsyneError("SYSTEM", `${uri}: cannot ${listen ? "listen on" : "send to"} ${this.endpoint.display}: ${error.message}`)));
  }

  async #open(): Promise<void> {
    const e = this.endpoint;
    const iface = this.#options.multicastInterface;
    const group = isMulticast(e.hostname);
    if (this.endpoint.listen) {
      const socket = await Bun.udpSocket({
        hostname: group ? "0.0.0.0" : e.hostname,
        port: e.port,
        binaryType: "uint8array",
        socket: {
          data: (_s, data, port, address, flags) => this.#receive(data, port, address, flags.truncated),
          error: (_s, error) => debug(this.uri, `socket: ${error?.message ?? error}`),
        },
      });
      if (this.#closed) return socket.close();
      if (group) socket.addMembership(e.hostname, iface);
      socket.unref();
      this.#socket = socket;
      this.#listening = `${e.hostname.includes(":") ? `[${e.hostname}]` : e.hostname}:${socket.port}`;
    } else {
      const socket = await Bun.udpSocket({
        hostname: iface ?? (e.hostname.startsWith("127.") ? "127.0.0.1" : "0.0.0.0"),
        port: 0,
        binaryType: "uint8array",
        connect: { hostname: e.hostname, port: e.port },
        socket: {
          drain: () => this.#pump(),
          error: (_s, error) => debug(this.uri, `socket: ${error?.message ?? error}`),
        },
      });
      if (this.#closed) return socket.close();
      if (group) {
        if (iface) socket.setMulticastInterface(iface);
        socket.setMulticastTTL(1); // this network only
      }
      socket.unref();
      this.#socket = this.#out = socket;
      this.#pump();
    }
    debug(this.uri, `${this.endpoint.listen ? "receiving on" : "sending to"} ${this.endpoint.display}`);
    this.#waits.check();
  }

  #fail(error: PsyneError): void {
    if (this.#failure) return;
    debug(this.uri, error.message);
    this.#failure = error;
    this.#waits.rejectAll(error);
  }

  // ---- sending ---------------------------------------------------------------------------------

  #afterSend = (): void => {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  };

  /** Each committed message to one datagram, many per sendMany; stops when the kernel's buffer is full (resumed on drain). */
  #pump(): void {
    const socket = this.#out;
    if (socket === null || this.#closed) return;
    const port = this.#port;
    const ring = port.bytes;
    const batch = this.#batch;
    const view = this.#batchView;
    for (;;) {
      const tail = port.tail();
      if (tail === this.#sentEnd) break;
      const datagrams: Uint8Array[] = [];
      const ends: number[] = [];
      let w = 0;
      while (datagrams.length < BATCH && w < BATCH_BYTES) {
        const at = port.next();
        if (at < 0) break;
        const length = port.length;
        view.setUint32(w, DATAGRAM_MAGIC, true);
        view.setUint32(w + 4, DATAGRAM_VERSION, true);
        view.setUint32(w + 8, this.#id, true);
        this.#seq = nextSeq(this.#seq);
        view.setUint32(w + 12, this.#seq, true);
        view.setUint32(w + 16, port.type, true);
        copyBytes(ring, at, length, batch, w + DATAGRAM_HEADER);
        datagrams.push(batch.subarray(w, w + DATAGRAM_HEADER + length));
        ends.push(port.end());
        w += DATAGRAM_HEADER + length;
      }
      if (datagrams.length === 0) {
        this.#release(tail); // only skipped records were left
        break;
      }
      const sent = socket.sendMany(datagrams);
      this.#sent += sent;
      if (sent > 0) this.#release(ends[sent - 1]!);
      if (sent < datagrams.length) {
        // the kernel's buffer is full: the rest stays in the ring, sent again (same numbers) on drain
        this.#seq = (this.#seq - (datagrams.length - sent)) >>> 0;
        port.rewind();
        break;
      }
    }
    this.#waits.check();
  }

  #release(end: number): void {
    this.#port.releaseTo(end);
    this.#sentEnd = end;
    this.#ring[WAKE](WaitKind.Space); // a parked sendAsync() finds room now
  }

  // ---- receiving -------------------------------------------------------------------------------

  #receive(data: Uint8Array, port: number, address: string, truncated: boolean): void {
    if (this.#closed) return;
    const count = (why: string) => {
      this.#errors[why] = (this.#errors[why] ?? 0) + 1;
      debug(this.uri, `dropped a datagram from ${address}:${port}: ${why}`);
    };
    if (truncated || data.byteLength < DATAGRAM_HEADER) return count("malformed");
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (view.getUint32(0, true) !== DATAGRAM_MAGIC || view.getUint16(4, true) !== DATAGRAM_VERSION) return count("protocol");
    const id = view.getUint32(8, true);
    const seq = view.getUint32(12, true);
    const type = view.getUint32(16, true);
    const length = data.byteLength - DATAGRAM_HEADER;
    if (length > this.bufferSize - REC_HEADER) return count("larger than the ring");
    let sender = this.#senders.get(id);
    if (sender === undefined) {
      if (this.#senders.size >= MAX_SENDERS) this.#senders.delete(this.#senders.keys().next().value!);
      sender = new Sender(`${address.includes(":") ? `[${address}]` : address}:${port}`);
      this.#senders.set(id, sender);
    } else {
      const ahead = (seq - sender.last) | 0;
      if (ahead <= 0) {
        this.#reordered++; // late (or repeated): its moment has passed
        return;
      }
      this.#lost += ahead - 1;
    }
    sender.last = seq;
    if (!this.#port.write(type, data, DATAGRAM_HEADER, length)) return count("ring full");
    this.#ring[WAKE](WaitKind.Data); // a parked recv() takes it now
    sender.messages++;
    sender.bytes += data.byteLength;
  }

  // ---- the Transport interface -----------------------------------------------------------------

  get closed(): boolean {
    return this.#closed;
  }

  sender(): Channel {
    if (this.#failure) throw this.#failure;
    if (this.endpoint.listen) throw new ChannelRoleError(`${this.uri}: a udp receiver (listen: true) only receives; open udp://${this.endpoint.display} without listen to send`);
    return this.#ring;
  }

  receiver(): Channel {
    if (this.#failure) throw this.#failure;
    if (!this.endpoint.listen) throw new ChannelRoleError(`${this.uri}: a udp sender only sends; receive with { listen: true }`);
    return this.#ring;
  }

  /** The socket is open (bound, for a receiver). */
  ready(options: WaitOptions): Promise<void> {
    return this.#wait(() => this.#socket !== null, options, "ready()");
  }

  /** Everything committed was handed to the kernel (udp has no acknowledgement). */
  flush(options: WaitOptions): Promise<void> {
    if (this.endpoint.listen) return Promise.resolve();
    return this.#wait(() => this.#port.tail() === this.#sentEnd, options, "flush()");
  }

  #wait(done: () => boolean, options: WaitOptions, what: string): Promise<void> {
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#closed) return Promise.reject(new PsyneError("CHANNEL_CLOSED", `channel ${this.uri} is closed`));
    return this.#waits.until(done, options, () => `${what} of ${this.uri} timed out after ${options.timeout} ms`);
  }

  stats(): ChannelStats {
    const ring = this.#ring.stats();
    const peers: PeerStats[] = [...this.#senders.entries()].map(([id, s]) => ({
      address: s.address,
      session: id.toString(16).padStart(8, "0"),
      state: "connected",
      connectedSince: new Date(s.since),
      awaySince: null,
      bytesIn: s.bytes,
      bytesOut: 0,
      messagesIn: s.messages,
      messagesOut: 0,
      resends: 0,
    }));
    return {
      ...ring,
      mode: ChannelMode.BROADCAST,
      processes: [],
      ...(this.endpoint.listen ? { listening: this.#listening, peers, lost: this.#lost, reordered: this.#reordered, errors: { ...this.#errors } } : { peers: [] }),
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const error = new PsyneError("CHANNEL_CLOSED", `channel ${this.uri} was closed while waiting`);
    this.#waits.rejectAll(error);
    this.#socket?.close();
    this.#socket = this.#out = null;
    this.#port.close();
    this.#ring.close();
    debug(this.uri, "closed");
  }
}

registerTransport("udp", (uri, address, options) => new UdpTransport(uri, address, options));
