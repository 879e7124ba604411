// psyne's public API: exactly the names of SPEC.md that are implemented (test/exports.test.ts).
export { type Channel, ChannelMode, type ChannelOptions, type ChannelStats, createChannel, removeChannel } from "./channel";
export {
  ChannelConfigError,
  ChannelCorruptError,
  ChannelExistsError,
  ChannelFullError,
  ChannelNotFoundError,
  ChannelRoleError,
  InvalidChannelNameError,
  MessageTooLargeError,
  MessageTypeError,
  PsyneError,
  RemoteError,
} from "./errors";
export type { ProcessInfo } from "./header";
export { ByteVector, DoubleVector, defineMessage, FloatVector, Int32Vector, type Message } from "./messages";
export { type ChannelInfo, inspectChannel, installSignalHandlers, listChannels, removeStaleChannels } from "./ops";
export { type PoolOptions, type PoolStats, ProcessPool } from "./pool";
export { type Client, connect, type Handler, type Server, type ServeOptions, serve } from "./rpc";
export type { WaitOptions } from "./waiting";
