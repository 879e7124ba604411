// Shared memory is untrusted input: whatever another process wrote into a segment, attaching and
// receiving give a clear error (ChannelCorruptError) or valid messages, never a crash or a hang.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { closeSync, openSync, writeFileSync, writeSync } from "node:fs";
import { createChannel, removeChannel } from "../src/index.ts";
import { layout } from "../src/core/layout.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, uniqueName } from "./helpers";
import { prng } from "./helpers/sequence.ts";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default

afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

/** A channel with a few undelivered messages, left in /dev/shm for a child to attach to. */
function channelWithMessages(tag: string): { name: string; file: string } {
  const name = uniqueName(tag);
  const ch = createChannel(`ipc://${name}`, 8192);
  for (let i = 0; i < 20; i++) ch.send("x".repeat(1 + ((i * 37) % 200)));
  ch.close(); // kept: it holds undelivered messages
  return { name, file: `/dev/shm/psyne.${name}` };
}

function scribble(file: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(file, "r+");
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
}

type Outcome = { ok: boolean; code?: string; received?: number; message?: string };

async function attachInChild(name: string): Promise<Outcome> {
  const result = await finish(spawnBun(fixture("attach_report.ts"), [`ipc://${name}`], { timeoutMs: 20_000 }));
  expect(result.signal).toBeNull(); // never a crash
  expect(result.code).toBe(0);
  return report<Outcome>(result);
}

describe("a corrupted header", () => {
  test("garbage over the first 64 bytes gives ChannelCorruptError, not a crash", async () => {
    const { name, file } = channelWithMessages("hdr");
    scribble(file, 0, new Uint8Array(64).map((_, i) => (i * 97 + 13) & 0xff));
    const outcome = await attachInChild(name);
    expect(outcome).toMatchObject({ ok: false, code: "CHANNEL_CORRUPT" });
    removeChannel(name);
  });

  const fields = ["OFF_VERSION", "OFF_LAYOUT_HASH", "OFF_MODE", "OFF_CAPACITY", "OFF_MAX_SLOTS", "OFF_RING_OFFSET", "OFF_INIT_STATE"] as const;
  for (const field of fields) {
    test(`a wrong ${field} is ChannelCorruptError with the value in the message`, async () => {
      const { name, file } = channelWithMessages(`f-${field}`);
      scribble(file, layout[field], new Uint8Array([0x39, 0x05, 0, 0x7f]));
      const outcome = await attachInChild(name);
      expect(outcome).toMatchObject({ ok: false, code: "CHANNEL_CORRUPT" });
      expect(outcome.message).toMatch(/\d/);
      removeChannel(name);
    });
  }

  test("a file that is not a psyne channel is ChannelCorruptError", async () => {
    const name = uniqueName("text");
    writeFileSync(`/dev/shm/psyne.${name}`, "hello, I am a text file\n".repeat(1000));
    expect(await attachInChild(name)).toMatchObject({ ok: false, code: "CHANNEL_CORRUPT" });
    removeChannel(name);
  });

  test("a truncated segment is ChannelCorruptError", async () => {
    const { name, file } = channelWithMessages("trunc");
    const fd = openSync(file, "r+");
    require("node:fs").ftruncateSync(fd, 10000);
    closeSync(fd);
    expect(await attachInChild(name)).toMatchObject({ ok: false, code: "CHANNEL_CORRUPT" });
    removeChannel(name);
  });

  test("an empty segment (creator died before initializing) is initialized by the next creator", () => {
    const name = uniqueName("empty");
    writeFileSync(`/dev/shm/psyne.${name}`, "");
    expect(() => createChannel(`ipc://${name}`, { open: "attach" })).toThrow(/never initialized/);
    const ch = createChannel(`ipc://${name}`, 4096);
    ch.send("works");
    expect(ch.receive()!.text()).toBe("works");
    ch.close();
  });
});

describe("corrupted cursors and records", () => {
  const regions: Array<[string, () => number, number]> = [
    ["the cursors", () => layout.OFF_TAIL, 256],
    ["the participant table", () => layout.OFF_SLOTS, 1024],
    ["the record headers", () => layout.RING_OFFSET, 512],
  ];
  for (const [what, offset, length] of regions) {
    test(`random bytes over ${what}: 20 seeded rounds, each an error or valid data, never a crash`, async () => {
      for (let seed = 1; seed <= 20; seed++) {
        const { name, file } = channelWithMessages(`rnd-${seed}`);
        const random = prng(seed);
        scribble(file, offset(), new Uint8Array(length).map(() => (random() * 256) | 0));
        const outcome = await attachInChild(name);
        if (!outcome.ok) expect(outcome.code).toBe("CHANNEL_CORRUPT");
        else expect(outcome.received).toBeLessThanOrEqual(100);
        removeChannel(name);
      }
    });
  }
});
