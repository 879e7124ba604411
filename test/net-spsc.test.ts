// tcp:// and unix:// SPSC channels across real processes: a seeded stream of random sizes up to
// the ring's capacity arrives once, in order, with every byte right, whichever end starts first.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { finish, ownSegments, reapChildren, report } from "./helpers";
import { freePort, listeningOn, socketLeft, socketPath, spawnPeer } from "./helpers/net";

setDefaultTimeout(150_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const COUNT = 100_000;
const BUFFER = 65536;
// the stamp (8 bytes) and the record header (16) make the largest messages fill the ring exactly
const MAX = BUFFER - 16 - 8;

interface ConsumerReport {
  received: number;
  wrong: number;
  firstWrong: string | null;
}

async function run(listenerUri: string, connectorUri: (listening: string) => string, order: "listener-first" | "connector-first", producerListens: boolean) {
  const options = { bufferSize: BUFFER, mode: "SPSC" };
  const common = { count: COUNT, seed: 12, maxSize: MAX };
  const listenerRole = producerListens ? "produce" : "consume";
  const connectorRole = producerListens ? "consume" : "produce";
  let listener;
  let connector;
  if (order === "listener-first") {
    listener = spawnPeer({ ...common, uri: listenerUri, role: listenerRole, options: { ...options, listen: true } });
    const address = await listeningOn(listener);
    connector = spawnPeer({ ...common, uri: connectorUri(address), role: connectorRole, options });
  } else {
    connector = spawnPeer({ ...common, uri: connectorUri(""), role: connectorRole, options });
    await Bun.sleep(200); // it is retrying by now
    listener = spawnPeer({ ...common, uri: listenerUri, role: listenerRole, options: { ...options, listen: true } });
  }
  const [l, c] = await Promise.all([finish(listener), finish(connector)]);
  const consumer = report<ConsumerReport>(producerListens ? c : l);
  const producer = report<{ sent: number; flushMs: number }>(producerListens ? l : c);
  expect(consumer.firstWrong).toBeNull();
  expect(consumer.wrong).toBe(0);
  expect(consumer.received).toBe(COUNT);
  expect(producer.sent).toBe(COUNT);
  expect(l.code).toBe(0);
  expect(c.code).toBe(0);
}

describe("tcp:// SPSC", () => {
  test("100 000 messages of random sizes up to the capacity, listener (consumer) first: all arrive in order, every byte checked", async () => {
    await run("tcp://127.0.0.1:0", (a) => `tcp://${a}`, "listener-first", false);
  });

  test("the connector (producer) starts before its listener exists: it connects when the listener appears, nothing lost", async () => {
    const port = freePort();
    await run(`tcp://127.0.0.1:${port}`, () => `tcp://127.0.0.1:${port}`, "connector-first", false);
  });

  test("the listener produces and the connector consumes (either end of SPSC may send)", async () => {
    await run("tcp://127.0.0.1:0", (a) => `tcp://${a}`, "listener-first", true);
  });
});

describe("unix:// SPSC", () => {
  test("100 000 messages of random sizes up to the capacity, listener first: all arrive in order, every byte checked; the socket file goes with the listener", async () => {
    const path = socketPath("spsc-u");
    await run(`unix://${path}`, () => `unix://${path}`, "listener-first", false);
    expect(socketLeft(path)).toBe(false);
  });

  test("the connector (producer) starts before its listener exists", async () => {
    const path = socketPath("spsc-u2");
    await run(`unix://${path}`, () => `unix://${path}`, "connector-first", false);
    expect(socketLeft(path)).toBe(false);
  });
});
