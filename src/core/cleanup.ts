// Automatic cleanup: a segment that no live process is attached to and that holds no unread
// message has nothing to keep (its processes crashed, or were stopped by a signal: SIGTERM from
// `docker stop`, systemd or `kill` ends a Bun process without its exit handlers). Whenever this
// process opens or closes a channel, at most once every SWEEP_INTERVAL_MS, psyne removes such
// segments of this user. The C core decides under the attach lock that create-or-attach and the
// last detach take, so a process attaching at that moment keeps the segment or starts a fresh one
// (csrc/segment.c, psy_remove_if_stale); a segment with unread messages stays for a restart.
import { readdirSync, statSync } from "node:fs";
import { debug } from "./debug";
import { cstr, lib } from "./ffi";

/**
 * Channels private to one process that made them (a request-response client's reply channel,
 * URI.r.ID, and a process pool's channels, pool-PID-ID-...): once nobody is attached, nobody can
 * ever read what they hold, so the cleanup removes them whatever they hold.
 */
const DISPOSABLE = [/\.r\.[0-9a-f]{24}$/, /^pool-\d+-[0-9a-f]{12}-(tasks|w\d+)$/];

const SHM_DIR = "/dev/shm";
const PREFIX = "psyne.";
const SWEEP_INTERVAL_MS = 5_000;
/** A segment that is not even initialized is left alone this long: its creator may be at work. */
const YOUNGEST_UNINITIALIZED_MS = 10_000;

let lastSweep = Number.NEGATIVE_INFINITY;
let scheduled = false;

/** Called when this process opens or closes a channel: sweeps soon, at most once per interval. */
export function sweepSoon(): void {
  if (scheduled || performance.now() - lastSweep < SWEEP_INTERVAL_MS || process.env.PSYNE_AUTO_CLEAN === "0") return;
  scheduled = true;
  setImmediate(() => {
    scheduled = false;
    lastSweep = performance.now();
    sweep();
  });
}

/** Removes this user's segments (whose name starts with `prefix`) that nobody is attached to and that hold no unread message. */
export function sweep(prefix = ""): string[] {
  const removed: string[] = [];
  let files: string[];
  try {
    files = readdirSync(SHM_DIR);
  } catch {
    return removed; // no /dev/shm (macOS): nothing to sweep this way
  }
  const uid = process.getuid?.();
  const now = Date.now();
  for (const file of files) {
    if (!file.startsWith(PREFIX + prefix)) continue;
    let stat;
    try {
      stat = statSync(`${SHM_DIR}/${file}`);
    } catch {
      continue; // removed meanwhile
    }
    if (uid !== undefined && stat.uid !== uid) continue;
    if (stat.size === 0 && now - stat.mtimeMs < YOUNGEST_UNINITIALIZED_MS) continue;
    const name = file.slice(PREFIX.length);
    const onlyIfEmpty = DISPOSABLE.some((pattern) => pattern.test(name)) ? 0 : 1;
    if (lib.psy_remove_if_stale(cstr(name), onlyIfEmpty) === 1) {
      removed.push(name);
      debug(`ipc://${name}`, "removed by the automatic cleanup: no live process, no unread message");
    }
  }
  return removed;
}
