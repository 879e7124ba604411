// Every error psyne throws: a PsyneError subclass with a stable `code`. C failure codes map to
// classes in one table (fromNative).

export class PsyneError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

export class InvalidChannelNameError extends PsyneError {
  constructor(message: string) {
    super("INVALID_CHANNEL_NAME", message);
  }
}
export class ChannelExistsError extends PsyneError {
  constructor(message: string) {
    super("CHANNEL_EXISTS", message);
  }
}
export class ChannelNotFoundError extends PsyneError {
  constructor(message: string) {
    super("CHANNEL_NOT_FOUND", message);
  }
}
export class ChannelConfigError extends PsyneError {
  constructor(message: string) {
    super("CHANNEL_CONFIG", message);
  }
}
export class ChannelCorruptError extends PsyneError {
  constructor(message: string) {
    super("CHANNEL_CORRUPT", message);
  }
}
export class ChannelRoleError extends PsyneError {
  constructor(message: string) {
    super("CHANNEL_ROLE", message);
  }
}
export class ChannelFullError extends PsyneError {
  constructor(
    message: string,
    readonly capacity: number,
    readonly used: number,
    readonly asked: number,
  ) {
    super("CHANNEL_FULL", message);
  }
}
export class MessageTooLargeError extends PsyneError {
  constructor(
    message: string,
    readonly size: number,
    readonly maxSize: number,
  ) {
    super("MESSAGE_TOO_LARGE", message);
  }
}
export class MessageTypeError extends PsyneError {
  constructor(
    message: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super("MESSAGE_TYPE", message);
  }
}

/** Codes of csrc/psyne.h's enum psy_error. */
export const NativeCode = {
  EMPTY: -1,
  FULL: -2,
  TOO_LARGE: -3,
  INVALID_NAME: -4,
  EXISTS: -5,
  NOT_FOUND: -6,
  CONFIG: -7,
  CORRUPT: -8,
  ROLE: -9,
  SYSTEM: -10,
  STATE: -11,
  INVALID_ARG: -12,
  SLOTS: -14,
  TIMEOUT: -15,
  INTERRUPTED: -16,
} as const;

const byNativeCode: Record<number, (message: string) => PsyneError> = {
  [NativeCode.INVALID_NAME]: (m) => new InvalidChannelNameError(m),
  [NativeCode.EXISTS]: (m) => new ChannelExistsError(m),
  [NativeCode.NOT_FOUND]: (m) => new ChannelNotFoundError(m),
  [NativeCode.CONFIG]: (m) => new ChannelConfigError(m),
  [NativeCode.CORRUPT]: (m) => new ChannelCorruptError(m),
  [NativeCode.ROLE]: (m) => new ChannelRoleError(m),
  [NativeCode.SYSTEM]: (m) => new PsyneError("SYSTEM", m),
  [NativeCode.STATE]: (m) => new PsyneError("INVALID_STATE", m),
  [NativeCode.INVALID_ARG]: (m) => new PsyneError("INVALID_ARGUMENT", m),
  [NativeCode.SLOTS]: (m) => new PsyneError("TOO_MANY_PARTICIPANTS", m),
};

/** The error for a negative C return code, with the C side's description. */
export function fromNative(code: number, message: string): PsyneError {
  const make = byNativeCode[code];
  return make ? make(message) : new PsyneError("NATIVE", `psyne C core returned ${code}: ${message}`);
}

/** The remote side (a request handler or a pool task) threw: `message` is its error's message. */
export class RemoteError extends PsyneError {
  constructor(
    message: string,
    readonly remoteName = "Error",
  ) {
    super("REMOTE_ERROR", message);
  }
}
