// The seed's exercise 2, pub-sub: a BROADCAST channel where every subscriber gets every message
// sent after it subscribed. This script publishes 500 quotes to 3 subscriber processes (itself,
// with "subscriber ID"). You should see each subscriber report "500/500 quotes in order".
//   bun examples/pubsub.ts
import { ChannelMode, createChannel, defineMessage } from "../src/index.ts";

const Quote = defineMessage("Quote", { seq: "u32", price: "f64" });
const QUOTES = 500;
const [role, id, uri] = process.argv.slice(2);

if (role === "subscriber") {
  const feed = createChannel(uri!, { mode: ChannelMode.BROADCAST, role: "consumer" }); // subscribed from now on
  console.log(`subscriber ${id} ready`);
  let expected = 0;
  let inOrder = true;
  while (expected < QUOTES) {
    const quote = await feed.recv(Quote, { timeout: 10_000 });
    if (!quote) break;
    inOrder &&= quote.seq === expected && quote.price === 100 + quote.seq / 100;
    expected++;
  }
  feed.close();
  console.log(`subscriber ${id}: ${expected}/${QUOTES} quotes ${inOrder ? "in order" : "OUT OF ORDER"}`);
  process.exit(expected === QUOTES && inOrder ? 0 : 1);
} else {
  const uri = `ipc://quotes-${process.pid}`;
  const feed = createChannel(uri, { bufferSize: 64 * 1024, mode: ChannelMode.BROADCAST, role: "producer" });
  const subscribers = [1, 2, 3].map((n) =>
    Bun.spawn([process.execPath, import.meta.path, "subscriber", String(n), uri], { stdout: "pipe", stderr: "inherit", timeout: 30_000 }),
  );
  // publish once all three have subscribed (each says so)
  const outputs = subscribers.map((s) => s.stdout.getReader());
  const firstLines = await Promise.all(outputs.map((r) => r.read()));
  for (const line of firstLines) process.stdout.write(new TextDecoder().decode(line.value));
  for (let seq = 0; seq < QUOTES; seq++) {
    const quote = await Quote.allocAsync(feed, { timeout: 10_000 }); // the slowest subscriber sets the pace
    quote.seq = seq;
    quote.price = 100 + seq / 100;
    feed.send(quote);
  }
  const codes = await Promise.all(
    subscribers.map(async (s, i) => {
      for (let chunk = await outputs[i]!.read(); !chunk.done; chunk = await outputs[i]!.read())
        process.stdout.write(new TextDecoder().decode(chunk.value));
      return s.exited;
    }),
  );
  feed.close();
  console.log(`published ${QUOTES} quotes to ${subscribers.length} subscribers`);
  process.exit(codes.every((c) => c === 0) ? 0 : 1);
}
