// durable nats:// channels (JetStream) on a real nats-server: a consumer SIGKILLed while holding
// messages, the server killed and restarted mid-stream, the whole consumer service killed and
// restarted. Nothing may be lost; duplicates are counted and allowed only where the spec allows
// them (at-least-once: what a dead consumer held or had just released, what the server had not
// yet recorded as acknowledged).
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { fixture, finish, reapChildren, report, spawnBun, uniqueName, untilOutput, waitForLine } from "./helpers";
import { startNats, stopAllNats, Tally } from "./helpers/nats";

setDefaultTimeout(60_000);
afterEach(reapChildren);
afterAll(stopAllNats);

const peer = fixture("nats_peer.ts");
const subject = (tag: string) => `psyne.durable.${uniqueName(tag)}`;

test("a consumer SIGKILLed while holding messages: a live consumer of the same durable gets them after ackWait, nothing lost", async () => {
  const server = await startNats();
  const uri = `${server.url}/${subject("held")}`;
  const N = 2000;
  const durable = JSON.stringify({ durable: "work", ackWait: 1000, mode: "SPMC" });
  const producer = spawnBun(peer, ["produce", uri, JSON.stringify({ durable: "pub" }), 0, N]);
  expect(report<{ sent: number }>(await finish(producer)).sent).toBe(N); // stored: flush() waited for every PubAck
  const first = spawnBun(peer, ["consume", uri, durable, 300], { stdin: "pipe" }); // holds its 300th message
  await waitForLine(first, "held");
  const tally = new Tally().update([first]);
  const [held] = tally.held;
  first.kill("SIGKILL");
  await first.exited;
  const second = spawnBun(peer, ["consume", uri, durable], { stdin: "pipe" });
  await untilOutput([second], () => tally.update([second]).distinctTotal >= N, "every message arrived");
  second.stdin!.end();
  expect(report<{ broken: number }>(await finish(second)).broken).toBe(0);
  tally.update([second]);
  expect(tally.missing({ 0: N })).toEqual([]);
  // the message the dead consumer held came again; a duplicate is only ever one the first consumer had
  expect(tally.counts.get(`${held!.producer}:${held!.seq}`)).toBe(2);
  expect(tally.duplicates()).toBeLessThanOrEqual(300);
  expect(tally.perChild.get(first)).toBe(300);
});

test("the server killed and restarted mid-stream: core and JetStream producers and a durable consumer lose nothing", async () => {
  const server = await startNats();
  const uri = `${server.url}/${subject("restart")}`;
  const N = 8000;
  // the consumer's durable makes the stream first, so that it stores the core producer's messages too
  const consumer = spawnBun(peer, ["consume", uri, JSON.stringify({ durable: "svc", ackWait: 2000 })], { stdin: "pipe" });
  await waitForLine(consumer, "ready");
  const producers = [
    spawnBun(peer, ["produce", uri, "{}", 0, N]), // core NATS: held in its ring while disconnected, resent after
    spawnBun(peer, ["produce", uri, JSON.stringify({ durable: "pub" }), 1, N]), // JetStream: resent until acknowledged
  ];
  const tally = new Tally();
  await untilOutput([consumer], () => tally.update([consumer]).total >= N / 4, "a quarter of the stream arrived");
  await server.kill(); // SIGKILL
  await server.restart(); // same port, same store
  await untilOutput([consumer], () => tally.update([consumer]).distinctTotal >= 2 * N, "every message arrived");
  const sent = await Promise.all(producers.map(async (p) => report<{ sent: number; network: { reconnects: number } }>(await finish(p))));
  expect(sent.map((s) => s.sent)).toEqual([N, N]);
  consumer.stdin!.end();
  const received = report<{ broken: number; network: { reconnects: number } }>(await finish(consumer));
  expect(received.broken).toBe(0);
  expect(received.network.reconnects).toBeGreaterThanOrEqual(1);
  expect(tally.update([consumer]).missing({ 0: N, 1: N })).toEqual([]);
  console.log(`server restart: ${tally.total} deliveries of ${2 * N} messages (${tally.duplicates()} duplicates)`);
});

test("the whole consumer service SIGKILLed and restarted: the new service gets every message the old one had not finished", async () => {
  const server = await startNats();
  const uri = `${server.url}/${subject("service")}`;
  const N = 6000;
  const options = JSON.stringify({ durable: "service", ackWait: 1000, mode: "SPMC" });
  const producer = spawnBun(peer, ["produce", uri, JSON.stringify({ durable: "pub" }), 0, N]);
  const tally = new Tally();
  const service = () => [0, 1, 2].map(() => spawnBun(peer, ["consume", uri, options], { stdin: "pipe" }));
  const old = service();
  await untilOutput(old, () => tally.update(old).total >= N / 3, "a third of the stream was processed");
  for (const c of old) c.kill("SIGKILL");
  await Promise.all(old.map((c) => c.exited));
  tally.update(old);
  const replacement = service();
  await untilOutput(replacement, () => tally.update(replacement).distinctTotal >= N, "every message was processed");
  expect(report<{ sent: number }>(await finish(producer)).sent).toBe(N);
  for (const c of replacement) c.stdin!.end();
  for (const c of replacement) expect(report<{ broken: number }>(await finish(c)).broken).toBe(0);
  expect(tally.update(replacement).missing({ 0: N })).toEqual([]);
  console.log(`service restart: ${tally.total} deliveries of ${N} messages (${tally.duplicates()} duplicates)`);
});
