// src/index.ts exports exactly the SPEC.md names implemented so far: nothing internal leaks.
import { expect, test } from "bun:test";
import * as psyne from "../src/index.ts";

// SPEC.md names, marked by the issue that implements them. When an issue lands, its names move up.
const implemented = [
  "createChannel",
  "removeChannel",
  "ChannelMode",
  "FloatVector",
  "DoubleVector",
  "Int32Vector",
  "ByteVector",
  "defineMessage",
  "PsyneError",
  "InvalidChannelNameError",
  "ChannelExistsError",
  "ChannelNotFoundError",
  "ChannelConfigError",
  "ChannelCorruptError",
  "ChannelRoleError",
  "ChannelFullError",
  "MessageTooLargeError",
  "MessageTypeError",
  "installSignalHandlers",
  "listChannels",
  "inspectChannel",
  "removeStaleChannels",
  "serve",
  "connect",
  "ProcessPool",
  "RemoteError",
  "bridge",
];
const notYet: string[] = [];

test("the module exports exactly the implemented SPEC.md names", () => {
  expect(Object.keys(psyne).sort()).toEqual([...implemented].sort());
  for (const name of notYet) expect(psyne).not.toHaveProperty(name);
});

test("every error class is a PsyneError with a code", () => {
  for (const name of implemented.filter((n) => n.endsWith("Error"))) {
    const ErrorClass = (psyne as unknown as Record<string, new (...a: unknown[]) => psyne.PsyneError>)[name]!;
    const err = new ErrorClass(name === "PsyneError" ? "X" : "m", "m", 0, 0, 0);
    expect(err).toBeInstanceOf(psyne.PsyneError);
    expect(err).toBeInstanceOf(Error);
    expect(typeof err.code).toBe("string");
    expect(err.name).toBe(name);
  }
});

test("ChannelMode has the five modes of the spec", () => {
  expect(Object.keys(psyne.ChannelMode)).toEqual(["SPSC", "MPSC", "SPMC", "MPMC", "BROADCAST"]);
});
