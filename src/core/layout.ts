// The shared-memory layout, read from the C core at load time (csrc/layout.h is the only place
// that defines a number); TypeScript never restates an offset.
import { lib } from "./ffi";

function parse(text: string): Readonly<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const pair of text.split(";")) {
    if (!pair) continue;
    const [name, value] = pair.split("=");
    out[name] = Number(value);
  }
  return Object.freeze(out);
}

const table = parse(String(lib.psy_layout()));

function get(name: string): number {
  const value = table[name];
  if (value === undefined) throw new Error(`psyne: the C core does not define layout constant ${name}`);
  return value;
}

/** Every layout constant by its layout.h name without the PSY_ prefix. */
export const layout = new Proxy(table, { get: (_, name: string) => get(name) }) as Readonly<Record<string, number>>;
export const layoutTable = table;
export const layoutHash = lib.psy_layout_hash();
