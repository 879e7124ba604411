// Reads a channel's control block and participant table (a live mapping or a copy) into plain
// values, bounding nothing it does not need: every field is a number, whatever the bytes say.
import { layout } from "./layout";

export const modeNames = ["SPSC", "MPSC", "SPMC", "MPMC", "BROADCAST"] as const;

export interface ProcessInfo {
  /** Participant slot in the channel's table. */
  slot: number;
  pid: number;
  roles: Array<"producer" | "consumer">;
  /** The kernel still holds this participant's lock: the process lives. */
  alive: boolean;
  /** This handle. */
  self: boolean;
  messagesSent: number;
  messagesReceived: number;
}

export interface HeaderInfo {
  mode: (typeof modeNames)[number] | "unknown";
  capacity: number;
  bytesInUse: number;
  messagesSent: number;
  bytesSent: number;
  messagesReceived: number;
  bytesReceived: number;
  fullEvents: number;
  createdAt: Date;
  /** 64-bit positions (bytes ever written), as bigints. */
  cursors: { head: bigint; tail: bigint; claimHead: bigint; claimTail: bigint };
  processes: ProcessInfo[];
}

const counters = () => [
  layout.SLOT_MSGS_SENT,
  layout.SLOT_BYTES_SENT,
  layout.SLOT_MSGS_RECEIVED,
  layout.SLOT_BYTES_RECEIVED,
  layout.SLOT_FULL_EVENTS,
];

/** Channel-wide view from the header bytes; `alive(slot)` asks the kernel about a participant. */
export function readHeader(view: DataView, alive: (slot: number) => boolean, selfSlot = -1): HeaderInfo {
  const u32 = (offset: number) => view.getUint32(offset, true);
  const u64 = (offset: number) => Number(view.getBigUint64(offset, true));
  const offsets = counters();
  const totals = offsets.map((_, i) => u64(layout.OFF_RETIRED + 8 * i));
  const processes: ProcessInfo[] = [];
  for (let slot = 0; slot < layout.MAX_SLOTS; slot++) {
    const base = layout.OFF_SLOTS + slot * layout.SLOT_SIZE;
    if (u32(base + layout.SLOT_STATE) !== layout.SLOT_ACTIVE) continue;
    offsets.forEach((offset, i) => (totals[i]! += u64(base + offset)));
    const roleBits = u32(base + layout.SLOT_ROLES);
    const roles: ProcessInfo["roles"] = [];
    if (roleBits & layout.ROLE_PRODUCER) roles.push("producer");
    if (roleBits & layout.ROLE_CONSUMER) roles.push("consumer");
    processes.push({
      slot,
      pid: u32(base + layout.SLOT_PID),
      roles,
      alive: alive(slot),
      self: slot === selfSlot,
      messagesSent: u64(base + layout.SLOT_MSGS_SENT),
      messagesReceived: u64(base + layout.SLOT_MSGS_RECEIVED),
    });
  }
  const capacity = u32(layout.OFF_CAPACITY);
  const position = (offset: number) => view.getBigUint64(offset, true);
  const cursors = {
    head: position(layout.OFF_HEAD),
    tail: position(layout.OFF_TAIL),
    claimHead: position(layout.OFF_CLAIM_HEAD),
    claimTail: position(layout.OFF_CLAIM_TAIL),
  };
  return {
    mode: modeNames[u32(layout.OFF_MODE)] ?? "unknown",
    capacity,
    bytesInUse: Math.min(capacity, Number(BigInt.asUintN(64, cursors.tail - cursors.head))),
    messagesSent: totals[0]!,
    bytesSent: totals[1]!,
    messagesReceived: totals[2]!,
    bytesReceived: totals[3]!,
    fullEvents: totals[4]!,
    createdAt: new Date(u64(layout.OFF_CREATED_MS)),
    cursors,
    processes,
  };
}
