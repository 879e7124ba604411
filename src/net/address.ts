// The address part of tcp://, unix:// and udp:// URIs, and the options every direct network
// channel shares, checked before any socket exists (InvalidChannelNameError, INVALID_ARGUMENT,
// ChannelConfigError with the values involved).
import { existsSync, lstatSync, readFileSync, unlinkSync } from "node:fs";
import { resolve } from "node:path";
import { ChannelMode, type ChannelOptions } from "../core/channel";
import { describe, invalidArgument } from "../core/check";
import { ChannelConfigError, ChannelExistsError, InvalidChannelNameError, PsyneError } from "../core/errors";
import { debug } from "../core/debug";

export interface Endpoint {
  scheme: "tcp" | "unix" | "udp";
  listen: boolean;
  /** tcp/udp: the host to listen on or connect to ("0.0.0.0" for tcp://:PORT). */
  hostname: string;
  port: number;
  /** unix: the socket path ("\0name" for the abstract namespace). */
  unix: string;
  /** host:port or the path, for messages. */
  display: string;
}

// the longest path a sockaddr_un holds on Linux (108 bytes with the final NUL)
const UNIX_PATH_MAX = 107;

export function parseEndpoint(scheme: "tcp" | "unix" | "udp", uri: string, address: string, options: ChannelOptions): Endpoint {
  if (options.listen !== undefined && typeof options.listen !== "boolean") throw invalidArgument("listen", "true or false", options.listen);
  if (scheme === "unix") {
    if (address === "" || address === "@") throw new InvalidChannelNameError(`invalid channel URI '${uri}': use unix:///absolute/path, unix://relative/path or unix://@name`);
    if (address.includes("\0")) throw new InvalidChannelNameError(`invalid channel URI '${uri}': a socket path cannot contain a NUL byte`);
    const unix = address.startsWith("@") ? `\0${address.slice(1)}` : resolve(address);
    if (Buffer.byteLength(unix) > UNIX_PATH_MAX)
      throw new InvalidChannelNameError(`invalid channel URI '${uri}': the socket path ${unix} has ${Buffer.byteLength(unix)} bytes, Linux allows ${UNIX_PATH_MAX}`);
    return { scheme, listen: options.listen === true, hostname: "", port: 0, unix, display: address.startsWith("@") ? address : unix };
  }
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]*):(\d{1,5})$/.exec(address);
  const port = Number(match?.[2]);
  if (!match || port > 65535)
    throw new InvalidChannelNameError(`invalid channel URI '${uri}': expected ${scheme}://HOST:PORT (or ${scheme}://:PORT to listen on every interface), port 0 to 65535`);
  const host = match[1]!.replace(/^\[(.*)\]$/, "$1");
  const listen = host === "" || options.listen === true;
  if (host === "" && options.listen === false)
    throw new InvalidChannelNameError(`invalid channel URI '${uri}': ${scheme}://:PORT listens on every interface; give a host to connect to`);
  if (!listen && port === 0) throw new InvalidChannelNameError(`invalid channel URI '${uri}': cannot connect to port 0`);
  const hostname = host === "" ? "0.0.0.0" : host;
  return { scheme, listen, hostname, port, unix: "", display: `${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}` };
}

/** Is `hostname` an address only this machine reaches? */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\./.test(hostname);
}

let warned = false;
/** One warning per process: a listener any machine can reach, with neither auth nor tls. */
export function warnIfExposed(uri: string, endpoint: Endpoint, options: ChannelOptions): void {
  if (endpoint.scheme === "unix" || isLoopback(endpoint.hostname) || options.auth || options.tls || warned) return;
  warned = true;
  console.warn(
    `psyne: ${uri} listens on ${endpoint.display}, reachable from other machines, with neither auth nor tls: ` +
      "anyone who can connect can read and send its messages (options.auth: { token }, options.tls)",
  );
}

/** The mode a direct channel runs in; SPMC/MPMC across machines are for nats://. */
export function checkDirectMode(uri: string, mode: unknown, allowed: readonly ChannelMode[]): ChannelMode | undefined {
  if (mode === undefined) return undefined;
  if (typeof mode !== "string" || !Object.hasOwn(ChannelMode, mode))
    throw new PsyneError("INVALID_ARGUMENT", `unknown channel mode ${describe(mode)}: use one of ${Object.keys(ChannelMode).join(", ")}`);
  if (!allowed.includes(mode as ChannelMode))
    throw new ChannelConfigError(
      mode === "SPMC" || mode === "MPMC"
        ? `${uri}: ${mode} (each message to exactly one of many consumers) across machines goes through a server: use nats://HOST:PORT/SUBJECT; direct channels take ${allowed.join(", ")}`
        : `${uri}: mode ${mode} is not available here; use ${allowed.join(", ")}`,
    );
  return mode as ChannelMode;
}

/** Milliseconds option >= 0 (Infinity allowed), or the default. */
export function checkMillis(value: unknown, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !(value >= 0)) throw invalidArgument(name, "a number of milliseconds >= 0", value);
  return value;
}

/**
 * Makes room for a listener's socket file: a stale one (its listener died) is removed; a live
 * listener's, or a file that is not a socket, is left alone and reported.
 */
export function clearStaleSocket(uri: string, path: string): void {
  if (path.startsWith("\0") || !existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new ChannelExistsError(`${uri}: ${path} exists and is not a socket; psyne will not replace it`);
  if (socketIsBound(path)) throw new ChannelExistsError(`${uri}: another process listens on ${path}`);
  debug(uri, `removing stale socket file ${path} (its listener is gone)`);
  unlinkSync(path);
}

/** Linux lists every bound Unix socket with its path in /proc/net/unix; flag 00010000 is a listener. */
function socketIsBound(path: string): boolean {
  let table: string;
  try {
    table = readFileSync("/proc/net/unix", "utf8");
  } catch {
    return true; // cannot tell: let listen() report the address in use
  }
  for (const line of table.split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (fields.length >= 8 && fields.slice(7).join(" ") === path && (Number.parseInt(fields[3]!, 16) & 0x10000) !== 0) return true;
  }
  return false;
}
