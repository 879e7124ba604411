// The shared-memory layout, read from the C core at load time (csrc/layout.h is the only place
// that defines a number); TypeScript never restates an offset.
import { lib } from "./ffi";

function parse(text: string): Readonly<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const pair of text.split(";")) {
    if (!pair) continue;
    const [name, value] = pair.split("=");
    out[name!] = Number(value);
  }
  return Object.freeze(out);
}

const table = parse(String(lib.psy_layout()));

function get(name: string): number {
  const value = table[name];
  if (value === undefined) throw new Error(`psyne: the C core does not define layout constant ${name}`);
  return value;
}

/** The names of layout.h's PSY_LAYOUT_CONSTANTS, so that a misspelt one is a type error (test/layout.test.ts keeps the two lists equal). */
export const layoutNames = [
  "LAYOUT_VERSION", "CACHE_LINE", "MIN_CAPACITY", "MAX_CAPACITY", "DEFAULT_CAPACITY", "MAX_SLOTS", "NAME_MAX",
  "OFF_VERSION", "OFF_LAYOUT_HASH", "OFF_INIT_STATE", "OFF_MODE", "OFF_CAPACITY", "OFF_MAX_SLOTS", "OFF_RING_OFFSET",
  "OFF_PRODUCER_OWNER", "OFF_CONSUMER_OWNER", "OFF_TAG_SALT", "OFF_CREATED_MS", "OFF_FENCE_MODE", "OFF_TAIL",
  "OFF_CLAIM_TAIL", "OFF_HEAD", "OFF_CLAIM_HEAD", "OFF_RETURNED", "OFF_DATA_SEQ", "OFF_DATA_WAITERS",
  "OFF_SPACE_SEQ", "OFF_SPACE_WAITERS", "OFF_RETIRED", "OFF_SLOTS", "SLOT_SIZE", "SLOT_STATE", "SLOT_PID",
  "SLOT_START_TIME", "SLOT_ROLES", "SLOT_GENERATION", "SLOT_MSGS_SENT", "SLOT_BYTES_SENT", "SLOT_MSGS_RECEIVED",
  "SLOT_BYTES_RECEIVED", "SLOT_FULL_EVENTS", "SLOT_READ_POS", "SLOT_CLAIMING_POS", "SLOT_CLAIMING_SPAN",
  "SLOT_WAITING", "SLOT_TAKEN_POS", "SLOT_BELL", "SLOT_BELL_STATE", "OFF_BELLS", "BELL_IDLE", "BELL_ARMED", "BELL_RUNG", "BELL_BITS", "RING_OFFSET", "REC_HEADER", "REC_ALIGN", "REC_LENGTH", "REC_TYPE", "REC_STATE",
  "REC_TAG", "REC_CLAIMED", "REC_COMMITTED", "REC_ABANDONED", "REC_TAKEN", "REC_DONE", "REC_SKIPPED", "SLOT_FREE",
  "SLOT_ACTIVE", "ROLE_PRODUCER", "ROLE_CONSUMER", "INIT_READY", "FENCE_ASYMMETRIC", "FENCE_SYMMETRIC",
  "TYPE_FLOAT_VECTOR", "TYPE_DOUBLE_VECTOR", "TYPE_INT32_VECTOR", "TYPE_BYTE_VECTOR", "TYPE_TEXT", "TYPE_JSON",
] as const;
export type LayoutName = (typeof layoutNames)[number];

/** Every layout constant by its layout.h name without the PSY_ prefix. */
export const layout = new Proxy(table, { get: (_, name: string) => get(name) }) as { readonly [name in LayoutName]: number };
export const layoutTable = table;
export const layoutHash = lib.psy_layout_hash();
