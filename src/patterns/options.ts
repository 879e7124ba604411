// Reading and checking the options of serve(), connect(), request() and the pool: own properties
// only (an inherited `timeout` or `toString` is not an option), each value checked with its name.
import { PsyneError } from "../core/errors";

/** The options object itself: undefined gives {}, anything but a plain object is an error. */
export function optionsObject(options: unknown, where: string): object {
  if (options === undefined) return {};
  if (typeof options !== "object" || options === null)
    throw new PsyneError("INVALID_ARGUMENT", `${where} takes an options object, got ${describe(options)}`);
  return options;
}

/** `options[name]` if it is the object's own property, else undefined. */
export function own(options: object, name: string): unknown {
  return Object.hasOwn(options, name) ? (options as Record<string, unknown>)[name] : undefined;
}

/** An integer option >= `min` (its default when absent). */
export function integerOption(options: object, name: string, fallback: number, min: number, where: string): number {
  const value = own(options, name) ?? fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min)
    throw new PsyneError("INVALID_ARGUMENT", `${where}: ${name} must be an integer >= ${min}, got ${describe(value)}`);
  return value;
}

/** A duration in milliseconds >= 0 (Infinity allowed: no limit), or undefined when absent. */
export function durationOption(options: object, name: string, where: string): number | undefined {
  const value = own(options, name);
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !(value >= 0))
    throw new PsyneError("INVALID_ARGUMENT", `${where}: ${name} must be a number of milliseconds >= 0 (or Infinity), got ${describe(value)}`);
  return value;
}

/** An AbortSignal option, or undefined when absent. */
export function signalOption(options: object, where: string): AbortSignal | undefined {
  const value = own(options, "signal");
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw new PsyneError("INVALID_ARGUMENT", `${where}: signal must be an AbortSignal, got ${describe(value)}`);
  return value;
}

/** A short description of any value for an error message; never throws. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value !== "object" && typeof value !== "function") return String(value);
  try {
    const name = (Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null)?.constructor?.name;
    if (typeof name !== "string" || !name) return "an object with no prototype";
    return `${/^[AEIOU]/.test(name) ? "an" : "a"} ${name}`;
  } catch {
    return `an ${typeof value}`;
  }
}
