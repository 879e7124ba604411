// The one door to native code: loads the C core, declares every symbol, and turns a failure to
// load into a PsyneError that names the platform, the library path and what to do.
import { dlopen, FFIType, type Pointer } from "bun:ffi";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { PsyneError } from "./errors";
// The libraries built into prebuilds/, imported as files (see scripts/build-native.mjs): inside an
// executable made by `bun build --compile` these are the embedded copies. A static import: a
// top-level await here would make every module that imports psyne evaluate asynchronously, and a
// Worker importing psyne would then miss messages posted to it before its handler was set.
import embedded from "../native-libs";

const { ptr: P, i32, u32, f64, cstring } = FFIType;

const symbols = {
  // segment lifecycle
  psy_open: { args: [cstring, u32, i32, u32, i32, P], returns: P },
  psy_close: { args: [P], returns: i32 },
  psy_bind_to_thread: { args: [P], returns: i32 },
  psy_unlink: { args: [cstring], returns: i32 },
  psy_inspect: { args: [cstring, P, P], returns: i32 },
  psy_remove_if_stale: { args: [cstring, i32], returns: i32 },
  psy_base: { args: [P], returns: P },
  psy_map_size: { args: [P], returns: f64 },
  psy_capacity: { args: [P], returns: u32 },
  psy_mode: { args: [P], returns: i32 },
  // participants
  psy_take_role: { args: [P, u32], returns: i32 },
  psy_slot: { args: [P], returns: i32 },
  psy_slot_alive: { args: [P, u32], returns: i32 },
  // ring (the hot path: i32/u32/ptr only, never a BigInt)
  psy_claim: { args: [P, u32, u32], returns: i32 },
  psy_claim_batch: { args: [P, u32, u32, u32], returns: i32 },
  psy_commit: { args: [P, u32], returns: i32 },
  psy_abandon: { args: [P, u32], returns: i32 },
  psy_poll: { args: [P], returns: i32 },
  psy_poll_batch: { args: [P], returns: i32 },
  psy_unpoll: { args: [P], returns: i32 },
  psy_release: { args: [P], returns: i32 },
  psy_polled: { args: [P], returns: P },
  psy_claimed: { args: [P], returns: P },
  psy_poll_block: { args: [P, u32], returns: i32 },
  psy_block: { args: [P], returns: P },
  psy_used: { args: [P], returns: u32 },
  psy_unflushed: { args: [P], returns: f64 },
  psy_peek: { args: [P], returns: i32 },
  psy_peek_intact: { args: [P], returns: i32 },
  // retained reading, for network pumps and bridges (positions modulo 2^52, see psyne.h)
  psy_poll_retained: { args: [P], returns: i32 },
  psy_polled_end: { args: [P], returns: f64 },
  psy_release_to: { args: [P, f64], returns: i32 },
  psy_rewind: { args: [P], returns: i32 },
  psy_released_position: { args: [P], returns: f64 },
  // waiting
  psy_wait: { args: [P, i32, u32, i32], returns: i32 },
  psy_waiter_start: { args: [P, i32, P], returns: i32 },
  psy_waiter_arm: { args: [P, i32, u32], returns: i32 },
  psy_waiter_disarm: { args: [P, i32], returns: i32 },
  psy_waiter_stop: { args: [P], returns: i32 },
  psy_bell_arm: { args: [P, i32, u32, u32], returns: i32 },
  psy_bell_wake: { args: [P, i32, u32, i32], returns: i32 },
  psy_bell_disarm: { args: [P, i32], returns: i32 },
  // diagnostics and layout
  psy_last_error: { args: [], returns: cstring },
  psy_layout: { args: [], returns: cstring },
  psy_layout_hash: { args: [], returns: u32 },
} as const;

const platform = `${process.platform}-${process.arch}`;
const libFile = process.platform === "darwin" ? "libpsyne.dylib" : "libpsyne.so";


/** Where the shared object is: PSYNE_LIB, else the build for this platform inside the package. */
export const libraryPath: string =
  process.env.PSYNE_LIB ?? embedded[platform] ?? fileURLToPath(new URL(`../../prebuilds/${platform}/lib/${libFile}`, import.meta.url));

function load() {
  const embeddedInExecutable = libraryPath.startsWith("/$bunfs/") || libraryPath.startsWith("B:/~BUN/");
  if (!embeddedInExecutable && !existsSync(libraryPath)) {
    throw new PsyneError(
      "NATIVE_LIBRARY",
      `psyne has no native library for ${platform} at ${libraryPath} (prebuilt: linux-x64, linux-arm64, darwin-x64, darwin-arm64); ` +
        "build one from csrc/ with `npm run build:native` (needs the Zig 0.11 toolchain), or set PSYNE_LIB",
    );
  }
  try {
    return dlopen(libraryPath, symbols).symbols;
  } catch (err) {
    const why = (err as Error).message;
    if (embeddedInExecutable)
      throw new PsyneError(
        "NATIVE_LIBRARY",
        `psyne's native library is embedded in this executable, and Bun could not extract it to a temporary directory: ` +
          `set TMPDIR or BUN_TMPDIR to a writable directory (now ${process.env.BUN_TMPDIR ?? process.env.TMPDIR ?? "/tmp"}). (${why})`,
      );
    throw new PsyneError("NATIVE_LIBRARY", `psyne could not load ${libraryPath} on ${platform}: ${why}`);
  }
}

export const lib = load();
export type Handle = Pointer;

/** The last C failure on this thread, with the values involved. */
export const lastError = (): string => String(lib.psy_last_error());

/** A NUL-terminated UTF-8 copy of `s` for cstring arguments. */
export const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, "utf8");
