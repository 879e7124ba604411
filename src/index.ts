// psyne's public API: exactly the names of SPEC.md that are implemented (test/exports.test.ts).
import "./net"; // registers the network schemes (nats://)
export { type Channel, ChannelMode, type ChannelOptions, type ChannelStats, createChannel, removeChannel } from "./core/channel";
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
} from "./core/errors";
export type { ProcessInfo } from "./core/header";
export { ByteVector, DoubleVector, defineMessage, FloatVector, Int32Vector, type Message } from "./core/messages";
export { type ChannelInfo, inspectChannel, installSignalHandlers, listChannels, removeStaleChannels } from "./core/ops";
export { type PoolOptions, type PoolStats, ProcessPool } from "./patterns/pool";
export { type Client, connect, type Handler, type Server, type ServeOptions, serve } from "./patterns/rpc";
export type { WaitOptions } from "./core/waiting";
export { type Bridge, type BridgeOptions, type BridgeStats, bridge } from "./net/bridge";
import "./net/index"; // registers tcp://, unix://, udp:// (the channel never imports its transports)
