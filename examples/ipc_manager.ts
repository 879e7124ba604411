// The seed's IPCManager ("Graceful startup"): connect() retries while the channel does not exist
// yet, and sendWithRetry() retries while it is full. This script is the manager (the producer);
// it starts its peer, a slow consumer that creates a small channel, only after 1.2 s. You should
// see "Retry 0: channel ... does not exist" two or three times, "connected after N retries", and
// "sent 500/500 messages (N sends retried on a full channel), the consumer received 500/500 in order".
//   bun examples/ipc_manager.ts
import { type Channel, ChannelFullError, ChannelMode, ChannelNotFoundError, createChannel, removeChannel } from "../src/index.ts";

const MESSAGES = 500;
const [role, uriArg] = process.argv.slice(2);
const body = (i: number) => `message ${i} `.padEnd(100, "."); // ~100 bytes: 4 KiB holds about 35

class IPCManager {
  channel: Channel | null = null;
  connected = false;
  connectRetries = 0;
  fullRetries = 0;

  async connect(uri: string, maxRetries = 20): Promise<boolean> {
    for (let i = 0; i < maxRetries; i++) {
      try {
        // "attach" throws ChannelNotFoundError until someone has created the channel (the default,
        // "create-or-attach", would create it here and never need a retry)
        this.channel = createChannel(uri, { open: "attach" });
        this.connected = true;
        return true;
      } catch (e) {
        if (!(e instanceof ChannelNotFoundError)) throw e; // anything else is not worth retrying
        console.log(`Retry ${i}: ${e.message}`);
        this.connectRetries++;
        await Bun.sleep(500);
      }
    }
    return false;
  }

  // The allocation is what fails on a full channel, so a retry is always safe: nothing was sent.
  // `await channel.sendAsync(data, { timeout })` does the same without polling: it sleeps in the
  // kernel until the consumer frees room.
  async sendWithRetry(data: string): Promise<void> {
    while (this.connected) {
      try {
        this.channel!.send(data);
        return;
      } catch (e) {
        if (!(e instanceof ChannelFullError)) throw e; // only "full" is worth waiting for
        this.fullRetries++;
        await Bun.sleep(1);
      }
    }
  }

  close(): void {
    this.connected = false;
    this.channel?.close();
  }
}

if (role === "consumer") {
  // the peer: creates a deliberately small channel (4 KiB) and reads it slowly
  const channel = createChannel(uriArg!, { bufferSize: 4096, mode: ChannelMode.SPSC, open: "create", role: "consumer" });
  console.log(`[consumer ${process.pid}] created ${uriArg} (4 KiB) and is reading slowly`);
  let received = 0;
  let inOrder = true;
  while (received < MESSAGES) {
    const m = await channel.recv(undefined, { timeout: 10_000 });
    if (!m) break;
    inOrder &&= m.text() === body(received);
    received++;
    if (received % 50 === 0) await Bun.sleep(5); // slower than the producer: the channel fills up
  }
  channel.close();
  console.log(`[consumer ${process.pid}] received ${received}/${MESSAGES} ${inOrder ? "in order" : "OUT OF ORDER"}`);
  process.exit(received === MESSAGES && inOrder ? 0 : 1);
} else {
  const uri = `ipc://managed-${process.pid}`;
  let peer: ReturnType<typeof Bun.spawn> | undefined;
  const late = setTimeout(() => {
    peer = Bun.spawn([process.execPath, import.meta.path, "consumer", uri], { stdout: "inherit", stderr: "inherit", timeout: 30_000 });
  }, 1200);

  const manager = new IPCManager();
  if (!(await manager.connect(uri))) {
    clearTimeout(late);
    peer?.kill();
    await peer?.exited;
    removeChannel(uri); // whatever the killed peer left
    console.log("could not connect");
    process.exit(1);
  }
  const retries = manager.connectRetries;
  console.log(`connected after ${retries} retries`);

  for (let i = 0; i < MESSAGES; i++) await manager.sendWithRetry(body(i));
  const fullRetries = manager.fullRetries;
  manager.close();
  const code = await peer!.exited;
  const ok = code === 0 && retries > 0 && fullRetries > 0;
  console.log(
    `sent ${MESSAGES}/${MESSAGES} messages (${fullRetries} sends retried on a full channel), ` +
      `the consumer ${code === 0 ? `received ${MESSAGES}/${MESSAGES} in order` : `failed (exit ${code})`}`,
  );
  process.exit(ok ? 0 : 1);
}
