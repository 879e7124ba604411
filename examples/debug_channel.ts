// The seed's DebugChannel ("Debugging Tools"): a wrapper that prints "[pid] Sending to URI, size: N"
// and "[pid] Received from URI, size: N" around send and receive. This script receives; it starts
// a partner (itself, with "sender") that sends 5 FloatVectors through its own DebugChannel, and
// runs it with PSYNE_DEBUG=1, psyne's own event log (one line per channel event, with the pid, on
// stderr), some of which it shows. You should see both sides' DebugChannel lines, a few
// "[psyne PID] ..." lines, then
// "debug channel: 5/5 messages logged as sent and received; PSYNE_DEBUG=1 logged N events of the sender".
//   bun examples/debug_channel.ts          (any psyne program: PSYNE_DEBUG=1 bun program.ts)
import { type Channel, type ChannelMode, createChannel, FloatVector, type Message } from "../src/index.ts";

class DebugChannel {
  readonly channel: Channel;
  readonly name: string;

  constructor(uri: string, size: number, mode?: ChannelMode) {
    this.name = uri;
    console.log(`[${process.pid}] Creating channel: ${uri}`);
    this.channel = createChannel(uri, size, mode);
  }

  send(msg: Message | string | ArrayBufferView): void {
    const size = typeof msg === "string" ? Buffer.byteLength(msg) : msg.byteLength;
    console.log(`[${process.pid}] Sending to ${this.name}, size: ${size}`);
    this.channel.send(msg);
  }

  /** receive() never blocks: null when nothing has arrived */
  receive<T extends Message>(type?: new (...args: never[]) => T): T | null {
    const msg = this.channel.receive(type as never) as T | null;
    if (msg) console.log(`[${process.pid}] Received from ${this.name}, size: ${msg.byteLength}`);
    return msg;
  }

  /** recv() waits (null after the timeout) */
  async recv<T extends Message>(type?: new (...args: never[]) => T, timeout = 10_000): Promise<T | null> {
    const msg = (await this.channel.recv(type as never, { timeout })) as T | null;
    if (msg) console.log(`[${process.pid}] Received from ${this.name}, size: ${msg.byteLength}`);
    return msg;
  }

  close(): void {
    this.channel.close();
  }
}

const COUNT = 5;
const [role, uriArg] = process.argv.slice(2);

if (role === "sender") {
  const channel = new DebugChannel(uriArg!, 64 * 1024);
  for (let i = 0; i < COUNT; i++) {
    const data = new FloatVector(channel.channel, 100);
    data.fill(i);
    channel.send(data);
  }
  channel.close();
} else {
  const uri = `ipc://debug-${process.pid}`;
  const channel = new DebugChannel(uri, 64 * 1024);
  const sender = Bun.spawn([process.execPath, import.meta.path, "sender", uri], {
    env: { ...process.env, PSYNE_DEBUG: "1" },
    stdout: "inherit",
    stderr: "pipe",
    timeout: 30_000,
  });
  let received = 0;
  for (let i = 0; i < COUNT; i++) {
    const data = await channel.recv(FloatVector);
    if (!data) break;
    if (data.length === 100 && data.every((v) => v === i)) received++;
  }
  channel.close();
  const [code, log] = await Promise.all([sender.exited, new Response(sender.stderr).text()]);
  const events = log.split("\n").filter((line) => line.startsWith(`[psyne ${sender.pid}]`));
  console.log(`PSYNE_DEBUG=1 on the sender (pid ${sender.pid}) wrote to stderr:`);
  for (const line of events.slice(0, 4)) console.log(`  ${line}`);
  const ok = received === COUNT && code === 0 && events.length > 0;
  console.log(
    `debug channel: ${received}/${COUNT} messages logged as sent and received; PSYNE_DEBUG=1 logged ${events.length} events of the sender`,
  );
  process.exit(ok ? 0 : 1);
}
