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
  return spawnBun(fixture("net_peer.ts"), [JSON.stringify({ options: {}, ...config })], { timeoutMs: options.timeoutMs ?? 120_000, ...(options.env ? { env: options.env } : {}) });
}

/** The address a listening peer printed first ({"listening": "127.0.0.1:PORT"}). */
export async function listeningOn(child: Subprocess): Promise<string> {
  const line = await stdoutLine(child, 0);
  const parsed = JSON.parse(line) as { listening?: string; message?: string };
  if (!parsed.listening) throw new Error(`the peer did not listen: ${line}`);
  return parsed.listening;
}
