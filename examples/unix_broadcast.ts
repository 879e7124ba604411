// Pub-sub over a Unix socket: a BROADCAST listener publishes 500 quotes to 3 subscriber processes
// (this script again, with "subscriber ID"), which adopt the listener's mode and size. Every
// subscriber gets every quote sent after it connected; the slowest sets the pace. You should see
// each subscriber report "500/500 quotes in order", then "published 500 quotes over unix://...".
//   bun examples/unix_broadcast.ts
import { ChannelMode, createChannel, defineMessage } from "../src/index.ts";

const Quote = defineMessage("Quote", { seq: "u32", price: "f64" });
const QUOTES = 500;
const [role, id, uri] = process.argv.slice(2);

if (role === "subscriber") {
  const feed = createChannel(uri!); // mode and size come from the listener
  await feed.ready({ timeout: 10_000 }); // connected: everything published from now on arrives
  console.log(`subscriber ${id} ready (${feed.mode})`);
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
  const uri = `unix:///tmp/psyne-quotes-${process.pid}.sock`;
  const feed = createChannel(uri, { listen: true, bufferSize: 64 * 1024, mode: ChannelMode.BROADCAST });
  const subscribers = [1, 2, 3].map((n) =>
    Bun.spawn([process.execPath, import.meta.path, "subscriber", String(n), uri], { stdout: "pipe", stderr: "inherit", timeout: 30_000 }),
  );
  // publish once all three are connected (each says so)
  const outputs = subscribers.map((s) => s.stdout.getReader());
  const firstLines = await Promise.all(outputs.map((r) => r.read()));
  for (const line of firstLines) process.stdout.write(new TextDecoder().decode(line.value));
  for (let seq = 0; seq < QUOTES; seq++) {
    const quote = await Quote.allocAsync(feed, { timeout: 10_000 }); // the slowest subscriber sets the pace
    quote.seq = seq;
    quote.price = 100 + seq / 100;
    feed.send(quote);
  }
  await feed.flush({ timeout: 10_000 }); // every subscriber has them all
  const codes = await Promise.all(
    subscribers.map(async (s, i) => {
      for (let chunk = await outputs[i]!.read(); !chunk.done; chunk = await outputs[i]!.read())
        process.stdout.write(new TextDecoder().decode(chunk.value));
      return s.exited;
    }),
  );
  feed.close(); // removes the socket file
  console.log(`published ${QUOTES} quotes over ${uri} to ${subscribers.length} subscribers`);
  process.exit(codes.every((c) => c === 0) ? 0 : 1);
}
