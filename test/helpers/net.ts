// Helpers for network channel tests: free loopback ports, socket paths, and the net_peer fixture.
import type { Subprocess } from "bun";
import { existsSync } from "node:fs";
import { fixture, spawnBun, stdoutLine, uniqueName } from "./index";

/** A port nobody listens on now (the kernel's pick for port 0, released at once). */
export function freePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/** A socket path of its own under /tmp (short enough for sockaddr_un). */
export const socketPath = (tag: string): string => `/tmp/${uniqueName(tag)}.sock`;
export const socketLeft = (path: string): boolean => existsSync(path);

export type PeerConfig = Record<string, unknown> & { uri: string; role: "produce" | "consume"; count: number; seed: number; maxSize: number };

/** Runs test/fixtures/net_peer.ts with `config`. */
export function spawnPeer(config: PeerConfig, options: { timeoutMs?: number; env?: Record<string, string> } = {}): Subprocess {
  return spawnBun(fixture("net_peer.ts"), [JSON.stringify({ options: {}, ...config })], {
    timeoutMs: options.timeoutMs ?? 120_000,
    ...(options.env ? { env: options.env } : {}),
    ...(config.waitGo ? { stdin: "pipe" as const } : {}),
  });
}

/** The address a listening peer printed first ({"listening": "127.0.0.1:PORT"}). */
export async function listeningOn(child: Subprocess): Promise<string> {
  const line = await stdoutLine(child, 0);
  const parsed = JSON.parse(line) as { listening?: string; message?: string };
  if (!parsed.listening) throw new Error(`the peer did not listen: ${line}`);
  return parsed.listening;
}

/**
 * A TCP proxy on a loopback port that forwards to `target`, for cutting connections at will:
 * cut() resets every connection it carries (both sides get a reset, as when a cable is pulled);
 * anything else (a side closing) is forwarded in order.
 */
export class CuttingProxy {
  readonly port: number;
  cuts = 0;
  /** Every byte it carried, both ways (for looking for a secret on the wire). */
  readonly carried: Uint8Array[] = [];
  #listener: import("bun").TCPSocketListener<Pipe>;
  #pipes = new Set<Pipe>();

  /** `resetFirst`: reset that many connections the moment they are accepted, then carry the rest. */
  constructor(target: { hostname: string; port: number }, options: { resetFirst?: number } = {}) {
    let resets = options.resetFirst ?? 0;
    this.#listener = Bun.listen<Pipe>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (client) => {
          if (resets > 0) {
            resets--;
            this.cuts++;
            return void client.terminate();
          }
          const pipe = new Pipe(client, this.carried);
          client.data = pipe;
          this.#pipes.add(pipe);
          Bun.connect<Pipe>({
            hostname: target.hostname,
            port: target.port,
            data: pipe,
            socket: {
              open: (server) => pipe.connected(server),
              data: (_server, chunk) => pipe.send(pipe.client, chunk),
              drain: () => pipe.drain(),
              close: () => pipe.close(),
              end: () => pipe.close(),
              connectError: () => pipe.close(),
            },
          }).catch(() => pipe.close());
        },
        data: (client, chunk) => client.data.toServer(chunk),
        drain: (client) => client.data.drain(),
        close: (client) => {
          if (!client.data) return; // one reset on accept
          client.data.close();
          this.#pipes.delete(client.data);
        },
        end: (client) => client.data?.close(),
      },
    });
    this.port = this.#listener.port;
  }

  /** Resets every connection now; returns how many it cut. */
  cut(): number {
    let cut = 0;
    for (const pipe of this.#pipes) if (pipe.reset()) cut++;
    this.#pipes.clear();
    if (cut > 0) this.cuts++;
    return cut;
  }

  stop(): void {
    this.cut();
    this.#listener.stop(true);
  }
}

type Sock = import("bun").Socket<Pipe>;
class Pipe {
  server: Sock | null = null;
  #early: Uint8Array[] = [];
  #queues = new Map<Sock, Uint8Array[]>();
  #closed = false;
  constructor(
    readonly client: Sock,
    readonly carried: Uint8Array[],
  ) {}
  connected(server: Sock): void {
    if (this.#closed) return server.terminate();
    this.server = server;
    for (const chunk of this.#early) this.send(server, chunk);
    this.#early = [];
  }
  toServer(chunk: Uint8Array): void {
    if (this.server) this.send(this.server, chunk);
    else this.#early.push(chunk);
  }
  send(to: Sock, chunk: Uint8Array): void {
    this.carried.push(chunk.slice());
    const queue = this.#queues.get(to) ?? [];
    this.#queues.set(to, queue);
    if (queue.length) return void queue.push(chunk);
    const n = to.write(chunk, 0, chunk.byteLength);
    if (n >= 0 && n < chunk.byteLength) queue.push(chunk.subarray(n));
  }
  drain(): void {
    for (const [to, queue] of this.#queues) {
      while (queue.length) {
        const chunk = queue[0]!;
        const n = to.write(chunk, 0, chunk.byteLength);
        if (n < 0) return;
        if (n < chunk.byteLength) {
          queue[0] = chunk.subarray(n);
          break;
        }
        queue.shift();
      }
    }
  }
  /** One side ended: end the other after what is queued (a graceful close passes through). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.drain();
    this.client.end();
    this.server?.end();
  }
  reset(): boolean {
    if (this.#closed) return false;
    this.#closed = true;
    this.client.terminate();
    this.server?.terminate();
    return true;
  }
}

/** A raw socket to a listener, for speaking (or breaking) the protocol by hand. */
export class RawPeer {
  received = new Uint8Array(0);
  readonly closed: Promise<void>;
  #socket: import("bun").Socket<undefined> | null = null;
  #changed: () => void = () => {};
  #close: () => void = () => {};

  static async connect(target: { hostname?: string; port?: number; unix?: string }): Promise<RawPeer> {
    const peer = new RawPeer();
    const handlers = {
      binaryType: "uint8array" as const,
      data: (_s: unknown, chunk: Uint8Array) => {
        const all = new Uint8Array(peer.received.byteLength + chunk.byteLength);
        all.set(peer.received, 0);
        all.set(chunk, peer.received.byteLength);
        peer.received = all;
        peer.#changed();
      },
      close: () => peer.#close(),
    };
    peer.#socket = (await (target.unix
      ? Bun.connect({ unix: target.unix, socket: handlers as never })
      : Bun.connect({ hostname: target.hostname!, port: target.port!, socket: handlers as never }))) as never;
    return peer;
  }

  private constructor() {
    this.closed = new Promise<void>((resolve) => (this.#close = resolve));
  }

  send(bytes: Uint8Array): void {
    this.#socket!.write(bytes, 0, bytes.byteLength);
  }

  /** Resolves once `n` bytes arrived (or the connection closed). */
  async bytes(n: number): Promise<Uint8Array> {
    let open = true;
    this.closed.then(() => (open = false));
    while (this.received.byteLength < n && open) await Promise.race([new Promise<void>((r) => (this.#changed = r)), this.closed]);
    return this.received;
  }

  end(): void {
    this.#socket?.end();
  }
}
