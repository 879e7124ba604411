// The far end of bench/nats.ts, in its own process: a subscriber that counts and checks N messages
// (each starts with its sequence number, u32 little-endian), or an echo for the ping-pong.
//   client-sub URL SUBJECT N        the official client, callback subscription
//   psyne-sub  URI N                psyne nats:// channel, messages() loop
//   client-echo URL SUBJECT         replies each message on SUBJECT.back
//   psyne-echo URI                  replies each message on URI.back
// Prints "ready" once subscribed, then one JSON line: { count, bad, firstAt, lastAt } (ms since epoch).
import { connect } from "@nats-io/transport-node";
import { ByteVector, createChannel } from "../../src/index.ts";

const [role, a, b, c] = process.argv.slice(2);
const now = () => performance.timeOrigin + performance.now();

function checker(n: number) {
  let count = 0;
  let bad = 0;
  let firstAt = 0;
  return {
    see(bytes: Uint8Array): boolean {
      if (count === 0) firstAt = now();
      const seq = bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16) | (bytes[3]! * 2 ** 24);
      if (seq !== count) bad++;
      count++;
      return count >= n;
    },
    report: () => console.log(JSON.stringify({ count, bad, firstAt, lastAt: now() })),
  };
}

if (role === "client-sub") {
  const nc = await connect({ servers: a! });
  const check = checker(Number(c));
  const done = Promise.withResolvers<void>();
  nc.subscribe(b!, {
    callback: (_e, m) => {
      if (check.see(m.data)) done.resolve();
    },
  });
  await nc.flush();
  console.log("ready");
  await done.promise;
  check.report();
  await nc.close();
} else if (role === "psyne-sub") {
  const ch = createChannel(a!, { role: "consumer" });
  await ch.ready({ timeout: 10_000 });
  console.log("ready");
  const check = checker(Number(b));
  for await (const m of ch.messages(ByteVector)) if (check.see(m)) break; // a ByteVector is a Uint8Array
  check.report();
  const dropped = ch.stats().network?.dropped;
  if (dropped) console.error(`psyne-sub: ${dropped} dropped`);
  ch.close();
} else if (role === "psyne-sub-drain") {
  const ch = createChannel(a!, { role: "consumer" });
  await ch.ready({ timeout: 10_000 });
  console.log("ready");
  const check = checker(Number(b));
  let done = false;
  const see = (m: Uint8Array) => {
    done ||= check.see(m);
  };
  while (!done) {
    const m = await ch.recv(ByteVector);
    see(m!);
    if (!done) ch.drain(see, Number.POSITIVE_INFINITY, ByteVector);
  }
  check.report();
  ch.close();
} else if (role === "client-echo") {
  const nc = await connect({ servers: a! });
  nc.subscribe(b!, { callback: (_e, m) => nc.publish(`${b}.back`, m.data) });
  await nc.flush();
  console.log("ready");
} else if (role === "client-echo2") {
  const nc = await connect({ servers: a! });
  const out = await connect({ servers: a! });
  nc.subscribe(b!, { callback: (_e, m) => out.publish(`${b}.back`, m.data) });
  await nc.flush();
  console.log("ready");
} else if (role === "psyne-echo") {
  const rx = createChannel(a!, { role: "consumer" });
  const tx = createChannel(`${a}.back`, { role: "producer" });
  await Promise.all([rx.ready({ timeout: 10_000 }), tx.ready({ timeout: 10_000 })]);
  console.log("ready");
  let left = b === undefined ? Number.POSITIVE_INFINITY : Number(b);
  for await (const m of rx.messages()) {
    tx.send(m);
    if (--left === 0) break;
  }
  await tx.flush();
  process.exit(0);
}
