// A 3-server NATS cluster on loopback stands in for three machines: a producer on server 1,
// consumers on servers 2 and 3; server 2 is SIGKILLed mid-stream. Its consumer moves to another
// server by itself, and durable delivery loses nothing.
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { fixture, finish, reapChildren, report, spawnBun, uniqueName, untilOutput, waitForLine } from "./helpers";
import { startCluster, stopAllNats, Tally } from "./helpers/nats";

setDefaultTimeout(150_000);
afterEach(reapChildren);
afterAll(stopAllNats);

const peer = fixture("nats_peer.ts");

test("producer on server 1, consumers on servers 2 and 3, server 2 killed mid-stream: the consumers carry on, nothing lost", async () => {
  const [s1, s2, s3] = await startCluster();
  const subject = `psyne.cluster.${uniqueName("c")}`;
  const N = 10_000;
  const options = JSON.stringify({ mode: "SPMC", durable: "workers", ackWait: 2000 });
  // each consumer knows only its own server: it learns the others from the cluster
  const consumers = [s2!, s3!].map((s) => spawnBun(peer, ["consume", `${s.url}/${subject}`, options], { stdin: "pipe", timeoutMs: 80_000 }));
  await Promise.all(consumers.map((c) => waitForLine(c, "ready")));
  const producer = spawnBun(peer, ["produce", `${s1!.url}/${subject}`, JSON.stringify({ durable: "producer" }), 0, N], { timeoutMs: 80_000 });
  const tally = new Tally();
  await untilOutput(consumers, () => tally.update(consumers).total >= N / 4, "a quarter of the stream arrived");
  await s2!.kill();
  await untilOutput(consumers, () => tally.update(consumers).distinctTotal >= N, "every message arrived");
  expect(report<{ sent: number }>(await finish(producer)).sent).toBe(N);
  for (const c of consumers) c.stdin!.end();
  const reports = await Promise.all(consumers.map(async (c) => report<{ broken: number; network: { reconnects: number; server: string } }>(await finish(c))));
  expect(reports.map((r) => r.broken)).toEqual([0, 0]);
  expect(reports[0]!.network.reconnects).toBeGreaterThanOrEqual(1); // server 2's consumer moved over
  expect(reports[0]!.network.server).not.toBe(`127.0.0.1:${s2!.port}`);
  expect(tally.update(consumers).missing({ 0: N })).toEqual([]);
  // the stream psyne made is replicated on all three servers
  // (after the kill the cluster may still be electing a JetStream leader: a request can time out
  // meanwhile, so ask again, each request bounded, for up to 60 s)
  const nc = await connect({ servers: s1!.url });
  const askedUntil = Date.now() + 60_000;
  let replicas: number | undefined;
  while (replicas === undefined) {
    try {
      const jsm = await jetstreamManager(nc, { timeout: 5000 });
      replicas = (await jsm.streams.info(await jsm.streams.find(subject))).config.num_replicas;
    } catch (error) {
      if (Date.now() > askedUntil) throw new Error(`no JetStream answer within 60 s of the kill: ${(error as Error).message}`);
    }
  }
  expect(replicas).toBe(3);
  await nc.close();
  console.log(`cluster: ${tally.total} deliveries of ${N} messages (${tally.duplicates()} duplicates)`);
});
