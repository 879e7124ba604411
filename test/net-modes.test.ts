// MPSC and BROADCAST over tcp:// and unix://, across real processes: many connectors feeding one
// listener with each producer's order kept; one listener feeding many subscribers, one of them
// late and one slow, each getting every message from the moment it connected.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { finish, ownSegments, reapChildren, report, stdoutLine } from "./helpers";
import { listeningOn, socketLeft, socketPath, spawnPeer } from "./helpers/net";

setDefaultTimeout(150_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

interface ConsumerReport {
  received: number;
  wrong: number;
  firstWrong: string | null;
  next: number[];
  first: number;
  interleaved: number;
}

describe("MPSC", () => {
  for (const scheme of ["tcp", "unix"] as const)
    test(`${scheme}: 4 producer processes connect to one consumer; every message of each arrives once, in that producer's order`, async () => {
      const PER = 20_000;
      const path = socketPath("mpsc");
      const listenUri = scheme === "tcp" ? "tcp://127.0.0.1:0" : `unix://${path}`;
      const common = { count: PER, seed: 77, maxSize: 3000, largeFraction: 0.05 };
      const consumer = spawnPeer({ ...common, uri: listenUri, role: "consume", producers: 4, options: { listen: true, mode: "MPSC", bufferSize: 65536 } });
      const address = await listeningOn(consumer);
      const connectUri = scheme === "tcp" ? `tcp://${address}` : listenUri;
      // two give their mode and size, two adopt the listener's
      const producers = [0, 1, 2, 3].map((id) =>
        spawnPeer({ ...common, uri: connectUri, role: "produce", id, ready: id >= 2, options: id < 2 ? { mode: "MPSC", bufferSize: 32768 } : {} }),
      );
      const results = await Promise.all(producers.map(finish));
      for (const r of results) {
        expect(r.code).toBe(0);
        expect(report<{ sent: number }>(r).sent).toBe(PER);
      }
      const c = await finish(consumer);
      const result = report<ConsumerReport>(c);
      expect(result.firstWrong).toBeNull();
      expect(result.wrong).toBe(0);
      expect(result.received).toBe(4 * PER);
      expect(result.next).toEqual([PER, PER, PER, PER]);
      expect(c.code).toBe(0);
      expect(socketLeft(path)).toBe(false);
    });
});

describe("BROADCAST", () => {
  for (const scheme of ["tcp", "unix"] as const)
    test(`${scheme}: 4 subscribers, one late and one slow: each gets every message sent after it connected, in order, every byte checked`, async () => {
      const COUNT = 20_000;
      const path = socketPath("bcast");
      const listenUri = scheme === "tcp" ? "tcp://127.0.0.1:0" : `unix://${path}`;
      const common = { count: COUNT, seed: 91, maxSize: 1000, largeFraction: 0.05 };
      const producer = spawnPeer({ ...common, uri: listenUri, role: "produce", waitGo: true, options: { listen: true, mode: "BROADCAST", bufferSize: 65536 } }, {});
      const address = await listeningOn(producer);
      const connectUri = scheme === "tcp" ? `tcp://${address}` : listenUri;
      const subscribe = (extra: Record<string, unknown>) =>
        spawnPeer({ ...common, uri: connectUri, role: "consume", ready: true, options: {}, ...extra });
      const early = [subscribe({}), subscribe({ slowMs: 1, slowEvery: 20 }), subscribe({ options: { mode: "BROADCAST", bufferSize: 16384 } })];
      for (const s of early) expect(await stdoutLine(s, 0)).toBe('{"ready":true}');
      const stdin = producer.stdin as import("bun").FileSink;
      stdin.write("go\n");
      stdin.flush();
      await Bun.sleep(50); // the late one joins in the middle of the stream
      const late = subscribe({ fromFirst: true });
      const [p, ...subs] = await Promise.all([finish(producer), ...early.map(finish), finish(late)]);
      expect(p.code).toBe(0);
      expect(report<{ sent: number }>(p).sent).toBe(COUNT);
      const reports = subs.map((s) => report<ConsumerReport>(s));
      for (const [i, r] of reports.entries()) {
        expect(r.firstWrong).toBeNull();
        expect(r.wrong).toBe(0);
        if (i < 3) {
          expect(r.first).toBe(0);
          expect(r.received).toBe(COUNT);
        } else {
          expect(r.first).toBeGreaterThan(0); // it joined mid-stream (the slow one keeps the stream going for a second)
          expect(r.received).toBe(COUNT - r.first); // from where it joined to the end, none missing
        }
      }
      expect(socketLeft(path)).toBe(false);
    });
});
