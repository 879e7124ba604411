// Operations on channels as files: list, inspect and remove them without attaching, remove the
// stale ones, and opt-in signal handling. Liveness always comes from the kernel (see csrc/).
import { ptr } from "bun:ffi";
import { readdirSync } from "node:fs";
import { closeAllChannels, parseUri, segmentName } from "./channel";
import { fromNative, NativeCode, PsyneError } from "./errors";
import { cstr, lastError, lib } from "./ffi";
import { type HeaderInfo, readHeader } from "./header";
import { layout } from "./layout";

export interface ChannelInfo extends Partial<HeaderInfo> {
  name: string;
  /** live: a process is attached; stale: none is (crashed, or left undelivered messages); corrupt: not a valid channel. */
  state: "live" | "stale" | "corrupt";
  /** What is wrong with a corrupt channel. */
  problem?: string;
}

const SHM_DIR = "/dev/shm";
const PREFIX = "psyne.";

function channelName(nameOrUri: string): string {
  if (nameOrUri.includes("://")) {
    const { scheme, name } = parseUri(nameOrUri);
    return segmentName(scheme, name);
  }
  return parseUri(`ipc://${nameOrUri}`).name;
}

/** A channel's header, attached processes and state, read without attaching to it. */
export function inspectChannel(nameOrUri: string): ChannelInfo {
  const name = channelName(nameOrUri);
  const header = new Uint8Array(new ArrayBuffer(layout.RING_OFFSET));
  const alive = new Uint32Array(new ArrayBuffer(4 * (1 + layout.MAX_SLOTS)));
  const rc = lib.psy_inspect(cstr(name), ptr(header), ptr(alive));
  if (rc === NativeCode.CORRUPT) return { name, state: "corrupt", problem: lastError() };
  if (rc < 0) throw fromNative(rc, lastError());
  const info = readHeader(new DataView(header.buffer), (slot) => alive[1 + slot] === 1);
  return { name, state: alive[0] ? "live" : "stale", ...info };
}

/** Every psyne channel on this machine, with its state. */
export function listChannels(): ChannelInfo[] {
  let files: string[];
  try {
    files = readdirSync(SHM_DIR);
  } catch (err) {
    throw new PsyneError("UNSUPPORTED", `listing channels needs ${SHM_DIR} (Linux): ${(err as Error).message}`);
  }
  const out: ChannelInfo[] = [];
  for (const file of files.sort()) {
    if (!file.startsWith(PREFIX)) continue;
    const name = file.slice(PREFIX.length);
    try {
      out.push(inspectChannel(name));
    } catch (err) {
      if ((err as PsyneError).code === "CHANNEL_NOT_FOUND") continue; // removed meanwhile
      out.push({ name, state: "corrupt", problem: (err as Error).message });
    }
  }
  return out;
}

/**
 * Removes every channel no live process is attached to (crashed, or left with undelivered
 * messages), corrupt ones included; with `prefix`, only those whose name starts with it.
 * Race-free: a process attaching at that instant either keeps the channel or starts a fresh
 * one. Returns the names removed.
 */
export function removeStaleChannels(options: { prefix?: string | undefined } = {}): string[] {
  const removed: string[] = [];
  for (const info of listChannels()) {
    if (info.state === "live" || !info.name.startsWith(options.prefix ?? "")) continue;
    const rc = lib.psy_remove_if_stale(cstr(info.name), 0);
    if (rc === 1) removed.push(info.name);
    else if (rc < 0 && rc !== NativeCode.NOT_FOUND) throw fromNative(rc, lastError());
  }
  return removed;
}

let handlersInstalled = false;

/**
 * Opt-in: on SIGINT or SIGTERM, close every open channel (so the last one out removes its
 * segment), then end the process as the signal would have. psyne installs nothing by itself.
 */
export function installSignalHandlers(signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM"]): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const signal of signals) {
    process.once(signal, () => {
      closeAllChannels();
      process.kill(process.pid, signal); // our handler is gone: the default action ends the process
    });
  }
}
