#!/usr/bin/env bun
// The psyne command line: list, inspect, watch and remove channels, and run the benchmark.
// Exit codes: 0 done, 1 the operation failed (not found, corrupt, ...), 2 bad usage.
import { parseArgs } from "node:util";
import { PEEK } from "./core/channel";
import { bridge, type ChannelMode, createChannel, type Message, PsyneError } from "./index";
import { type ChannelInfo, inspectChannel, installSignalHandlers, listChannels, removeStaleChannels } from "./core/ops";

const USAGE = `usage: psyne <command> [options]

commands:
  ls                 list channels: mode, capacity, bytes in use, processes, state
  stat NAME          one channel's header, cursors and attached processes
  tail NAME          print messages as they are sent (observes; takes nothing from consumers)
  rm NAME            remove a channel (attached processes keep their mapping)
  gc                 remove stale channels: no live process attached (--prefix P: only names starting with P)
  bench              run the throughput benchmark (bench/throughput.ts)
  bridge FROM TO     move every message from channel FROM to channel TO (any kinds: ipc://, nats://, ...),
                     types kept; a message leaves FROM only once TO accepted it (at-least-once)

options:
  --json             machine-readable output (one JSON document; tail: one per line)
  --count N          tail: stop after N messages
  --timeout MS       tail: stop after MS milliseconds without a message
  --from-mode MODE   bridge: FROM's mode (SPSC, MPSC, SPMC, MPMC, BROADCAST; an ipc:// channel's own by default)
  --to-mode MODE     bridge: TO's mode
  --from-durable N   bridge: consume a nats:// FROM through JetStream durable consumer N
  --to-durable N     bridge: publish to a nats:// TO through JetStream (stored, confirmed)
  --queue Q          bridge: the queue group of an SPMC/MPMC nats:// FROM
  --ack-wait MS      bridge: ackWait of --from-durable
  -h, --help         this help

NAME is a channel name (sensor_data) or URI (ipc://sensor_data).
Example: psyne bridge ipc://sensor_data nats://127.0.0.1:4222/sensors --to-durable sensors`;

class UsageError extends Error {}

function parse() {
  try {
    return parseArgs({
      allowPositionals: true,
      options: {
        json: { type: "boolean", default: false },
        count: { type: "string" },
        timeout: { type: "string" },
        prefix: { type: "string" },
        "from-mode": { type: "string" },
        "to-mode": { type: "string" },
        "from-durable": { type: "string" },
        "to-durable": { type: "string" },
        queue: { type: "string" },
        "ack-wait": { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

const kib = (n: number | undefined) => (n === undefined ? "-" : n >= 1 << 20 ? `${n / (1 << 20)} MiB` : `${Math.round(n / 1024)} KiB`);

/** JSON has no 64-bit integers: positions are printed as decimal strings. */
const bigintsAsStrings = (_key: string, value: unknown) => (typeof value === "bigint" ? value.toString() : value);

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd()).join("\n");
}

function ls(json: boolean): void {
  const channels = listChannels();
  if (json) return void console.log(JSON.stringify(channels, bigintsAsStrings, 2));
  if (channels.length === 0) return void console.log("no psyne channels");
  const rows = [["NAME", "MODE", "CAPACITY", "IN USE", "PROCS", "STATE"]];
  for (const c of channels) {
    const live = c.processes?.filter((p) => p.alive).length ?? 0;
    rows.push([c.name, c.mode ?? "-", kib(c.capacity), c.bytesInUse === undefined ? "-" : `${c.bytesInUse} B`, String(live), c.state === "corrupt" ? `corrupt: ${c.problem}` : c.state]);
  }
  console.log(table(rows));
}

function stat(name: string, json: boolean): number {
  const info: ChannelInfo = inspectChannel(name);
  if (json) {
    console.log(JSON.stringify(info, bigintsAsStrings, 2));
    return info.state === "corrupt" ? 1 : 0;
  }
  if (info.state === "corrupt") {
    console.log(`${info.name}: corrupt: ${info.problem}`);
    return 1;
  }
  const c = info.cursors!;
  console.log(`channel   ${info.name} (${info.state})
mode      ${info.mode}
capacity  ${info.capacity} bytes, ${info.bytesInUse} in use
created   ${info.createdAt!.toISOString()}
messages  ${info.messagesSent} sent (${info.bytesSent} bytes), ${info.messagesReceived} received (${info.bytesReceived} bytes), ${info.fullEvents} full events
cursors   head ${c.head}, tail ${c.tail}, claim head ${c.claimHead}, claim tail ${c.claimTail}`);
  const rows = [["SLOT", "PID", "ROLES", "ALIVE", "SENT", "RECEIVED"]];
  for (const p of info.processes!)
    rows.push([String(p.slot), String(p.pid), p.roles.join(",") || "-", p.alive ? "yes" : "no (crashed)", String(p.messagesSent), String(p.messagesReceived)]);
  console.log(info.processes!.length ? `\n${table(rows)}` : "\nno participants");
  return 0;
}

function describe(message: Message): Record<string, unknown> {
  const out: Record<string, unknown> = { type: message.type, typeId: message.typeId, length: message.byteLength };
  if (message.type === "text" || message.type === "json") out.text = message.text();
  else if (ArrayBuffer.isView(message) && !(message instanceof Uint8Array)) out.values = Array.from(message as unknown as Float32Array).slice(0, 16);
  else if ("toJSON" in message) out.fields = (message as unknown as { toJSON(): unknown }).toJSON();
  else out.hex = Buffer.from(message.bytes().subarray(0, 32)).toString("hex");
  return out;
}

async function tail(name: string, json: boolean, count: number, timeoutMs: number): Promise<number> {
  installSignalHandlers(); // Ctrl-C detaches cleanly
  const channel = createChannel(name.includes("://") ? name : `ipc://${name}`, { open: "attach" });
  let first = channel[PEEK](); // also fixes where watching starts: now
  console.error(`psyne: watching ${channel.uri} (Ctrl-C to stop)`);
  let seen = 0;
  let idleSince = performance.now();
  while (seen < count) {
    const peeked = first ?? channel[PEEK]();
    first = null;
    if (!peeked) {
      if (performance.now() - idleSince > timeoutMs) break;
      await Bun.sleep(10); // an observer must not hold anyone back, so it polls rather than parks
      continue;
    }
    idleSince = performance.now();
    seen++;
    const d = describe(peeked.message);
    if (!peeked.intact) d.overwritten = true;
    if (json) console.log(JSON.stringify(d));
    else {
      const body = d.text ?? d.values ?? d.fields ?? d.hex;
      console.log(`${d.type} (${d.length} B)${d.overwritten ? " [overwritten while read]" : ""}: ${typeof body === "string" ? body.slice(0, 200) : JSON.stringify(body)}`);
    }
  }
  channel.close();
  return 0;
}

type Values = ReturnType<typeof parse>["values"];

/** Runs a bridge until Ctrl-C (or SIGTERM): progress on a terminal, a summary at the end. */
async function runBridge(from: string, to: string, values: Values): Promise<number> {
  const uri = (name: string) => (name.includes("://") ? name : `ipc://${name}`);
  const ackWait = values["ack-wait"] === undefined ? undefined : Number(values["ack-wait"]);
  if (ackWait !== undefined && !(Number.isInteger(ackWait) && ackWait > 0)) throw new UsageError(`--ack-wait needs a whole number of milliseconds, got ${values["ack-wait"]}`);
  const side = (mode: string | undefined, durable: string | undefined) => ({
    ...(mode === undefined ? {} : { mode: mode.toUpperCase() as ChannelMode }),
    ...(durable === undefined ? {} : { durable }),
  });
  const b = bridge(uri(from), uri(to), {
    from: { ...side(values["from-mode"], values["from-durable"]), ...(values.queue ? { queue: values.queue } : {}), ...(ackWait ? { ackWait } : {}) },
    to: side(values["to-mode"], values["to-durable"]),
  });
  const tty = process.stderr.isTTY;
  process.stderr.write(`psyne: bridging ${b.from} -> ${b.to} (Ctrl-C to stop)\n`);
  let stopping: Promise<void> | null = null;
  const stop = () => (stopping ??= b.close());
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  for (;;) {
    await Promise.race([Bun.sleep(1000), stopping ?? new Promise(() => {})]);
    const s = b.stats();
    if (tty) process.stderr.write(`\r\x1b[K${s.forwarded} forwarded, ${s.rate} msg/s, ${s.inFlight} in flight, ${kib(s.sourceBacklog)} waiting in the source`);
    if (stopping || !s.running) break;
  }
  await stop();
  const s = b.stats();
  if (tty) process.stderr.write("\n");
  process.stderr.write(`psyne: bridge stopped: ${s.forwarded} message(s) forwarded${s.error ? `; ${s.error}` : ""}\n`);
  return s.error ? 1 : 0;
}

async function main(): Promise<number> {
  const { values, positionals } = parse();
  const [command, name = "", ...extra] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return command || values.help ? 0 : 2;
  }
  if (command === "bridge") {
    if (!name || extra.length !== 1) throw new UsageError("bridge needs FROM and TO, e.g. psyne bridge ipc://sensor_data nats://127.0.0.1:4222/sensors");
    return runBridge(name, extra[0]!, values);
  }
  const needsName = ["stat", "tail", "rm"].includes(command);
  if (needsName && !name) throw new UsageError(`${command} needs a channel NAME`);
  if (extra.length || (!needsName && name)) throw new UsageError(`unexpected argument ${needsName ? extra[0] : name}`);
  const number = (flag: "count" | "timeout", fallback: number) => {
    const raw = values[flag];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${flag} needs a whole number, got ${raw}`);
    return n;
  };
  switch (command) {
    case "ls":
      ls(values.json!);
      return 0;
    case "stat":
      return stat(name, values.json!);
    case "tail":
      return tail(name, values.json!, number("count", Number.POSITIVE_INFINITY), number("timeout", Number.POSITIVE_INFINITY));
    case "rm": {
      const { removeChannel } = await import("./core/channel");
      if (removeChannel(name)) {
        if (values.json) console.log(JSON.stringify({ removed: [name] }));
        else console.log(`removed ${name}`);
        return 0;
      }
      console.error(`psyne: no channel named ${name}`);
      return 1;
    }
    case "gc": {
      const removed = removeStaleChannels({ prefix: values.prefix });
      if (values.json) console.log(JSON.stringify({ removed }));
      else console.log(removed.length ? `removed ${removed.length} stale channel(s): ${removed.join(", ")}` : "no stale channels");
      return 0;
    }
    case "bench": {
      const script = new URL("../bench/throughput.ts", import.meta.url).pathname;
      const child = Bun.spawn([process.execPath, script], { stdout: "inherit", stderr: "inherit", env: process.env });
      return await child.exited;
    }
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

try {
  process.exitCode = await main();
} catch (err) {
  if (err instanceof UsageError) {
    console.error(`psyne: ${err.message}\n\n${USAGE}`);
    process.exitCode = 2;
  } else if (err instanceof PsyneError) {
    console.error(`psyne: ${err.message}`);
    process.exitCode = 1;
  } else throw err;
}
