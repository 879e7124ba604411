// Argument checks for the public entry points: each names the argument and shows the value it got.
// Lookups in psyne's own tables go through Object.hasOwn, so "toString" or "__proto__" is never a
// mode, an open mode or a field type.
import { PsyneError } from "./errors";

/** A short, readable rendering of any value for an error message (never throws). */
export function describe(value: unknown): string {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
    case "bigint":
      return `${value}n`;
    case "symbol":
      return value.toString();
    case "function":
      return `function ${value.name || "(anonymous)"}`;
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) return `an array of ${value.length}`;
      try {
        const name = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
        return typeof name === "string" && name !== "" && name !== "Object" ? `a ${name}` : "an object";
      } catch {
        return "an object";
      }
    }
    default:
      return String(value); // number, boolean, undefined
  }
}

/** INVALID_ARGUMENT: "`what` must be `expected`, got <value>". */
export function invalidArgument(what: string, expected: string, value: unknown): PsyneError {
  return new PsyneError("INVALID_ARGUMENT", `${what} must be ${expected}, got ${describe(value)}`);
}

/** A TypeError (code INVALID_ARGUMENT, as Node's ERR_INVALID_ARG_TYPE) for a callback that is not a function. */
export function checkCallback(fn: unknown, what: string, expects: string): void {
  if (typeof fn === "function") return;
  const error = new TypeError(`${what} must be a function ${expects}, got ${describe(fn)}`) as TypeError & { code: string };
  error.code = "INVALID_ARGUMENT";
  throw error;
}

/** An integer from 0 to 2^32-1 (what the C core takes as a u32). */
export function checkUint32(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > 0xffffffff)
    throw invalidArgument(what, "an integer from 0 to 2^32-1", value);
  return value;
}

/** A count limit: an integer >= 0, or Infinity for no limit. */
export function checkMax(value: unknown, what: string): number {
  if (typeof value !== "number" || !(value === Number.POSITIVE_INFINITY || (Number.isInteger(value) && value >= 0)))
    throw invalidArgument(what, "an integer >= 0 or Infinity", value);
  return value;
}

/** Milliseconds to wait: a number >= 0, Infinity meaning no limit; undefined is also no limit. */
export function checkTimeout(value: unknown, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !(value >= 0)) throw invalidArgument(what, "a number of milliseconds >= 0 (Infinity: no limit)", value);
  return value;
}

export interface CheckedWaitOptions {
  timeout: number | undefined;
  signal: AbortSignal | undefined;
}

const noOptions: CheckedWaitOptions = Object.freeze({ timeout: undefined, signal: undefined });

/** `{ timeout, signal }` of a waiting call, checked. */
export function checkWaitOptions(options: unknown, call: string): CheckedWaitOptions {
  if (options === undefined) return noOptions;
  if (typeof options !== "object" || options === null) throw invalidArgument(`${call}'s options`, "an object { timeout, signal }", options);
  const { timeout, signal } = options as { timeout?: unknown; signal?: unknown };
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgument(`${call}'s options.signal`, "an AbortSignal", signal);
  return { timeout: checkTimeout(timeout, `${call}'s options.timeout`), signal };
}
