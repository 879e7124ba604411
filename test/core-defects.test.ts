// The twelve ways an independent review made the C core lose, corrupt or stall messages
// (../shared/c-core-review, issue 11), each as a multi-process test of what a user sees. Tests that
// need no injection run on the shipped library; the others use the test library's kill and stall
// points (PSY_HOOK) at the exact line the review named.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ByteVector, ChannelMode, createChannel, removeChannel } from "../src/index.ts";
import { layout } from "../src/core/layout.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, testLibrary, uniqueName, waitForLine, waitForStderr } from "./helpers";
import { Puppet, type Reply } from "./helpers/puppet.ts";

setDefaultTimeout(60_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const hooked = (hook: string, extra: Record<string, string> = {}) => ({ PSYNE_LIB: testLibrary(), PSY_HOOK: hook, ...extra });
const testLib = () => ({ PSYNE_LIB: testLibrary() });
const ms = () => performance.now();

/** Receives until `count` messages came or `timeoutMs` passed; every one must be intact. */
async function receiveAll(consumer: Puppet, count: number, timeoutMs = 2000): Promise<Reply[]> {
  const got: Reply[] = [];
  while (got.length < count) {
    const r = await consumer.do(`recv ${timeoutMs}`);
    if (r.empty) break;
    expect(r.torn).toBeUndefined();
    expect(r.error).toBeUndefined();
    got.push(r);
  }
  return got;
}

describe("BROADCAST", () => {
  for (const how of ["closes", "is SIGKILLed"] as const)
    test(`a producer that ${how} and a new one: the new one does not overwrite what a subscriber has not read (1)`, async () => {
      const uri = `ipc://${uniqueName("bnewp")}`;
      const sub = new Puppet(9);
      expect((await sub.do(`open ${uri} BROADCAST 4096 consumer`)).ok).toBe(true);
      const first = new Puppet(1);
      await first.do(`open ${uri} - - producer`);
      for (let i = 0; i < 10; i++) expect((await first.do("sendnew 200")).ok).toBe(true); // 10 x 224 B unread
      if (how === "closes") await first.exit();
      else {
        first.proc.kill("SIGKILL");
        await first.proc.exited;
      }
      const second = new Puppet(2);
      await second.do(`open ${uri} - - producer`);
      let sent = 0;
      while ((await second.do("sendnew 200")).ok) sent++;
      expect(sent).toBeLessThanOrEqual(Math.floor((4096 - 10 * 224) / 224)); // only the free space
      const got = await receiveAll(sub, 10 + sent, 500);
      expect(got.map((r) => `${r.producer}:${r.seq}`)).toEqual([
        ...Array.from({ length: 10 }, (_, i) => `1:${i}`),
        ...Array.from({ length: sent }, (_, i) => `2:${i}`),
      ]);
      await Promise.all([sub.exit(), second.exit()]);
    });

  test("subscribers joining over and over while the producer floods are never lapped (2)", async () => {
    const uri = `ipc://${uniqueName("bjoin")}`;
    const producer = spawnBun(fixture("core_peer.ts"), ["producer", uri, "BROADCAST", 8192, 1, "/dev/null", 1e9, 0, 16], { stdin: "pipe" });
    await waitForLine(producer, "ready");
    const joiner = spawnBun(fixture("join_loop.ts"), [uri, 3000]);
    const result = report<{ joins: number; messages: number; broken: number; errors: string[] }>(await finish(joiner));
    (producer.stdin as import("bun").FileSink).end();
    expect((await finish(producer)).code).toBe(0);
    console.log(`${result.joins} joins, ${result.messages} messages checked`);
    expect(result.joins).toBeGreaterThan(100);
    expect(result.errors).toEqual([]);
    expect(result.broken).toBe(0);
  });

  test("a subscriber stalled between taking its role and picking its start is not lapped, and the producer does not stop (2)", async () => {
    const uri = `ipc://${uniqueName("bstall")}`;
    const producer = new Puppet(1, testLib());
    await producer.do(`open ${uri} BROADCAST 4096 producer`);
    const sub = new Puppet(9, hooked("subscribe_role", { PSY_HOOK_STALL_MS: "300" }));
    const opening = sub.do(`open ${uri} - - consumer`);
    await waitForStderr(sub.proc, "psyne-hook: stall subscribe_role");
    let sent = 0;
    for (let i = 0; i < 100; i++) if ((await producer.do("sendnew 100")).ok) sent++; // more than a ring while it stalls
    expect(sent).toBeGreaterThan(4096 / 128);
    expect((await opening).ok).toBe(true);
    const got = await receiveAll(sub, 1000, 300); // from where it started, in order, intact, to the last one sent
    expect(got.length).toBeGreaterThan(0);
    got.forEach((r, i) => expect(r.seq).toBe(got[0]!.seq! + i));
    expect(got[got.length - 1]!.seq).toBe(sent - 1);
    for (let i = 0; i < 5; i++) expect((await producer.do("sendnew 100")).ok).toBe(true);
    expect((await receiveAll(sub, 5, 300)).map((r) => r.seq)).toEqual([sent, sent + 1, sent + 2, sent + 3, sent + 4]);
    await Promise.all([sub.exit(), producer.exit()]);
  });

  test("a new subscriber taking the slot of a dead one while the producer reaps it keeps its role (12)", async () => {
    const uri = `ipc://${uniqueName("breap")}`;
    const producer = new Puppet(1, hooked("reap_checked", { PSY_HOOK_STALL_MS: "300" }));
    await producer.do(`open ${uri} BROADCAST 4096 producer`);
    const dead = new Puppet(8, testLib());
    await dead.do(`open ${uri} - - consumer`);
    let before = 0;
    while ((await producer.do("sendnew 200")).ok) before++; // full: the dead-to-be holds it back
    dead.proc.kill("SIGKILL");
    await dead.proc.exited;
    const reaping = producer.do("sendnew 200"); // finds the subscriber dead, stalls before clearing its role
    await waitForStderr(producer.proc, "psyne-hook: stall reap_checked");
    const fresh = new Puppet(9, testLib()); // takes the dead one's slot meanwhile
    expect((await fresh.do(`open ${uri} - - consumer`)).ok).toBe(true);
    expect((await reaping).ok).toBe(true);
    let after = 0;
    while ((await producer.do("sendnew 200")).ok) after++; // the new subscriber now holds it back
    const got = await receiveAll(fresh, 100, 300); // everything since it joined, intact
    expect(got.length).toBe(after + 1);
    got.forEach((r, i) => expect(r.seq).toBe(before + i));
    expect((await producer.do("sendnew 200")).ok).toBe(true); // room again once it read
    await Promise.all([fresh.exit(), producer.exit()]);
  });
});

describe("MPSC and MPMC", () => {
  for (const mode of [ChannelMode.MPSC, ChannelMode.MPMC])
    test(`${mode}: a producer idle while others move 4 GiB through the ring still sees it full (3)`, () => {
      const uri = `ipc://${uniqueName(`stale-${mode}`)}`;
      const idle = createChannel(uri, { mode, bufferSize: 4096, role: "producer" });
      const busy = createChannel(uri, { role: "producer" });
      const consumer = createChannel(uri, { role: "consumer" });
      const span = 2048; // two records fill the ring
      for (let moved = 0; moved < 2 ** 32 - 2 * span; moved += 2 * span) { // then two more: 2^32 bytes in all
        expect(busy.sendBatch(2, span - layout.REC_HEADER, () => {})).toBe(2);
        expect(consumer.drainBytes(() => {})).toBe(2);
      }
      busy.send(new Uint8Array(span - layout.REC_HEADER).fill(1));
      busy.send(new Uint8Array(span - layout.REC_HEADER).fill(2));
      expect(idle.tryAlloc(ByteVector, span - layout.REC_HEADER)).toBeNull(); // full: nothing overwritten
      expect([...consumer.receive()!.bytes().subarray(0, 4)]).toEqual([1, 1, 1, 1]);
      expect([...consumer.receive()!.bytes().subarray(0, 4)]).toEqual([2, 2, 2, 2]);
      for (const c of [idle, busy, consumer]) c.close();
    });

  test("open: create racing open: attach: the creator creates, the attacher attaches, nothing is left behind (4)", async () => {
    const names: string[] = [];
    for (let trial = 0; trial < 12; trial++) {
      const name = uniqueName("race");
      names.push(name);
      const uri = `ipc://${name}`;
      const at = Date.now() + 300;
      const creator = spawnBun(fixture("open_race.ts"), [uri, "create", at, at + 400]);
      const attacher = spawnBun(fixture("open_race.ts"), [uri, "attach", at, at + 400]);
      const [c, a] = await Promise.all([finish(creator), finish(attacher)]);
      expect(report(c)).toEqual({ ok: true });
      expect(report(a)).toEqual({ ok: true });
    }
    expect(ownSegments().filter((f) => names.some((n) => f === `psyne.${n}`))).toEqual([]);
  });

  for (const parked of [false, true])
    test(`a producer killed holding a batch of 64 claims delays another's message by less than 100 ms (${parked ? "parked" : "polling"} consumer) (5)`, async () => {
      const uri = `ipc://${uniqueName("batch")}`;
      const consumer = new Puppet(9);
      await consumer.do(`open ${uri} MPSC 65536 consumer`);
      const victim = new Puppet(1);
      await victim.do(`open ${uri} - - producer`);
      for (let i = 0; i < 64; i++) expect((await victim.do("alloc 48")).ok).toBe(true); // 64 records claimed, none sent
      victim.proc.kill("SIGKILL");
      await victim.proc.exited;
      const live = new Puppet(2);
      await live.do(`open ${uri} - - producer`);
      const receiving = consumer.do(parked ? "recv 2000" : "pollrecv 2000");
      await Bun.sleep(100); // parked in the kernel, or polling, by now
      const sentAt = ms();
      expect((await live.do("sendnew 48")).ok).toBe(true);
      const got = await receiving;
      const delay = ms() - sentAt;
      expect(got).toMatchObject({ ok: true, producer: 2, seq: 0 });
      expect(delay).toBeLessThan(100);
      await Promise.all([consumer.exit(), live.exit()]);
    });

  test("a producer killed after committing, before moving tail: a live producer's message behind it is delivered (9)", async () => {
    const uri = `ipc://${uniqueName("commit")}`;
    const consumer = new Puppet(9, testLib());
    await consumer.do(`open ${uri} MPSC 65536 consumer`);
    const victim = new Puppet(1, hooked("commit_stored"));
    await victim.do(`open ${uri} - - producer`);
    expect((await victim.do("alloc 48")).ok).toBe(true); // its record is at tail
    const live = new Puppet(2, testLib());
    await live.do(`open ${uri} - - producer`);
    expect((await live.do("sendnew 48")).ok).toBe(true); // committed behind the victim's
    const died = await victim.dieIn("send 0");
    expect(died.stderr).toContain("psyne-hook: kill commit_stored");
    const start = ms();
    const got = await receiveAll(consumer, 2, 1000);
    expect(ms() - start).toBeLessThan(100);
    expect(got.map((r) => `${r.producer}:${r.seq}`)).toEqual(["1:0", "2:0"]);
    await Promise.all([consumer.exit(), live.exit()]);
  });

  test("the first claimant of a fresh channel killed before writing its header does not block the channel (10)", async () => {
    const uri = `ipc://${uniqueName("fresh")}`;
    const consumer = new Puppet(9, { ...testLib(), PSY_TEST_START_POS: "0" });
    await consumer.do(`open ${uri} MPSC 4096 consumer`);
    const victim = new Puppet(1, hooked("claim_taken", { PSY_HOOK_HIT: "1" }));
    await victim.do(`open ${uri} - - producer`);
    expect((await victim.dieIn("sendnew 48")).stderr).toContain("psyne-hook: kill claim_taken"); // at position 0, no header
    const live = new Puppet(2, testLib());
    await live.do(`open ${uri} - - producer`);
    expect((await live.do("sendnew 48")).ok).toBe(true);
    const start = ms();
    expect(await consumer.do("recv 1000")).toMatchObject({ ok: true, producer: 2, seq: 0 });
    expect(ms() - start).toBeLessThan(100);
    await Promise.all([consumer.exit(), live.exit()]);
  });

  test("a recoverer stalled between deciding and writing never writes over a later lap (11)", async () => {
    const uri = `ipc://${uniqueName("stall")}`;
    const stalled = new Puppet(8, hooked("settle_claim_decided", { PSY_HOOK_STALL_MS: "300" }));
    await stalled.do(`open ${uri} MPMC 4096 consumer`);
    const victim = new Puppet(1, hooked("claim_taken", { PSY_HOOK_HIT: "20" }));
    await victim.do(`open ${uri} - - producer`);
    for (let i = 0; i < 19; i++) expect((await victim.do("sendnew 48")).ok).toBe(true);
    expect((await victim.dieIn("sendnew 48")).stderr).toContain("psyne-hook: kill claim_taken");
    const before = await receiveAll(stalled, 19); // then it finds the dead claim at tail:
    const recovering = stalled.do("recv 2000"); // decides to skip it, and stalls
    const released = recovering.then(async (first) => (await stalled.do("release"), first)); // then lets go of what it got
    await waitForStderr(stalled.proc, "psyne-hook: stall settle_claim_decided");
    const other = new Puppet(9, testLib()); // a second recoverer, and a producer that laps the ring
    await other.do(`open ${uri} - - consumer`);
    const live = new Puppet(2, testLib());
    await live.do(`open ${uri} - - producer`);
    const seen: string[] = [];
    let sent = 0;
    const deadline = ms() + 5000;
    while (sent < 200 && ms() < deadline) {
      if ((await live.do("sendnew 200")).ok) sent++;
      const r = await other.do("recv 0");
      expect(r.torn).toBeUndefined();
      expect(r.error).toBeUndefined();
      if (r.ok) seen.push(`${r.producer}:${r.seq}`);
    }
    const first = await released;
    expect(first.error).toBeUndefined();
    if (first.ok) seen.push(`${first.producer}:${first.seq}`);
    for (const r of await receiveAll(other, 1000, 200)) seen.push(`${r.producer}:${r.seq}`);
    expect(sent).toBe(200); // laps of the ring
    const fromLive = seen.filter((k) => k.startsWith("2:")).sort((a, b) => Number(a.slice(2)) - Number(b.slice(2)));
    expect(fromLive).toEqual(Array.from({ length: 200 }, (_, i) => `2:${i}`)); // each exactly once, intact
    expect(before.map((r) => r.seq)).toEqual(Array.from({ length: 19 }, (_, i) => i));
    await Promise.all([stalled.exit(), other.exit(), live.exit()]);
  });
});

describe("SPMC and MPMC work queues", () => {
  test("a consumer killed after passing an abandoned record does not leave head stuck (7)", async () => {
    const uri = `ipc://${uniqueName("abandon")}`;
    const producer = new Puppet(1, testLib());
    await producer.do(`open ${uri} SPMC 4096 producer`);
    await producer.do("alloc 100");
    await producer.do("discard 0"); // an abandoned record first
    expect((await producer.do("sendnew 100")).ok).toBe(true);
    const victim = new Puppet(8, hooked("take_claimed", { PSY_HOOK_HIT: "1" }));
    await victim.do(`open ${uri} - - consumer`);
    expect((await victim.dieIn("recv 1000")).stderr).toContain("psyne-hook: kill take_claimed");
    const live = new Puppet(9, testLib());
    await live.do(`open ${uri} - - consumer`);
    expect((await receiveAll(live, 1)).map((r) => r.seq)).toEqual([1]);
    let sent = 0;
    while ((await producer.do("sendnew 900")).ok) sent++;
    expect((await receiveAll(live, sent)).length).toBe(sent);
    await live.do("release");
    const start = ms();
    let room = false;
    while (!room && ms() - start < 1000) room = (await producer.do("sendnew 900")).ok === true;
    expect(room).toBe(true);
    expect(ms() - start).toBeLessThan(100);
    await Promise.all([producer.exit(), live.exit()]);
    removeChannel(uri); // it keeps the message sent last, unread
  });

  for (const disable of ["", "advance"])
  test(`a consumer killed after marking a record released, before moving head: the producer gets room again (8)${disable ? " (not with that recovery switched off)" : ""}`, async () => {
    const uri = `ipc://${uniqueName("done")}`;
    const env = { ...testLib(), ...(disable ? { PSY_TEST_DISABLE: disable } : {}) };
    const producer = new Puppet(1, env);
    await producer.do(`open ${uri} SPMC 4096 producer`);
    let sent = 0;
    while ((await producer.do("sendnew 1000")).ok) sent++; // full
    const victim = new Puppet(8, { ...hooked("release_done", { PSY_HOOK_HIT: "1" }), ...env });
    await victim.do(`open ${uri} - - consumer`);
    expect((await victim.do("recv 1000")).ok).toBe(true); // holds the first
    const live = new Puppet(9, env);
    await live.do(`open ${uri} - - consumer`);
    expect((await receiveAll(live, sent - 1)).length).toBe(sent - 1);
    await live.do("release");
    expect((await victim.dieIn("release")).stderr).toContain("psyne-hook: kill release_done");
    const start = ms();
    let room = false;
    while (!room && ms() - start < 1000) room = (await producer.do("sendnew 1000")).ok === true;
    expect(room).toBe(!disable);
    if (!disable) expect(ms() - start).toBeLessThan(100);
    await Promise.all([producer.exit(), live.exit()]);
    removeChannel(uri); // it keeps what was sent last, unread
  });

  test("a message given back at close wakes a parked consumer at once", async () => {
    const uri = `ipc://${uniqueName("giveback")}`;
    const producer = new Puppet(1);
    await producer.do(`open ${uri} SPMC 4096 producer`);
    const waiter = new Puppet(9);
    await waiter.do(`open ${uri} - - consumer`);
    const delays: number[] = [];
    for (let round = 0; round < 5; round++) {
      const taker = new Puppet(8);
      await taker.do(`open ${uri} - - consumer`);
      expect((await producer.do("sendnew 100")).ok).toBe(true);
      expect((await taker.do("recvtyped")).code).toBe("MESSAGE_TYPE"); // it takes it and keeps it: not a FloatVector
      const waiting = waiter.do("recv 3000");
      await Bun.sleep(10); // parked by now (its safety re-poll is 50 ms away)
      const start = ms();
      await taker.do("close"); // gives it back
      expect(await waiting).toMatchObject({ ok: true, producer: 1, seq: round });
      delays.push(ms() - start);
      await waiter.do("release");
      await taker.exit();
    }
    console.log(`given back: the parked consumer had it after ${delays.map((d) => d.toFixed(1)).join(", ")} ms`);
    expect(Math.max(...delays)).toBeLessThan(35); // woken by the give-back, not found by a safety re-poll (50 ms)
    await Promise.all([producer.exit(), waiter.exit()]);
  });
});

describe("single producers", () => {
  for (const mode of [ChannelMode.SPSC, ChannelMode.SPMC, ChannelMode.BROADCAST])
    for (const disable of ["", "orphans"])
      test(`${mode}: a producer killed holding an allocation: what it sent after it is delivered within 100 ms${disable ? " (fails with that recovery switched off)" : ""}`, async () => {
        const uri = `ipc://${uniqueName("orphan")}`;
        const env = { ...testLib(), ...(disable ? { PSY_TEST_DISABLE: disable } : {}) };
        const consumer = new Puppet(9, env);
        await consumer.do(`open ${uri} ${mode} 8192 consumer`);
        const producer = new Puppet(1, env);
        await producer.do(`open ${uri} - - producer`);
        expect((await producer.do("sendnew 100")).seq).toBe(0);
        expect((await producer.do("alloc 100")).ok).toBe(true); // seq 1, never sent: it holds back...
        for (let i = 0; i < 3; i++) expect((await producer.do("sendnew 100")).ok).toBe(true); // ...seq 2, 3, 4, whose send() returned
        expect(await consumer.do("recv 1000")).toMatchObject({ producer: 1, seq: 0 });
        producer.proc.kill("SIGKILL");
        await producer.proc.exited;
        const start = ms();
        const got = await receiveAll(consumer, 3, 300);
        const took = ms() - start;
        if (disable) {
          expect(got.length).toBe(0); // without it they wait for a new producer
        } else {
          expect(got.map((r) => r.seq)).toEqual([2, 3, 4]);
          expect(took).toBeLessThan(100);
        }
        await consumer.exit();
        removeChannel(uri);
      });
});

describe("waiting where membarrier is forbidden", () => {
  const launcher = join(tmpdir(), `psyne-no-membarrier-${process.pid}`);
  afterAll(() => rmSync(launcher, { force: true }));
  const build = () => {
    const zig = join(import.meta.dir, "..", "node_modules", "@ryoppippi", "zig-linux-x64", "zig");
    const built = Bun.spawnSync([zig, "cc", "-O2", "-o", launcher, join(import.meta.dir, "native", "no-membarrier.c")], { stderr: "pipe" });
    if (built.exitCode !== 0) throw new Error(`building the seccomp launcher failed: ${built.stderr}`);
  };
  const fenceMode = (name: string) => new DataView(readFileSync(`/dev/shm/psyne.${name}`).buffer).getUint32(layout.OFF_FENCE_MODE, true);

  for (const disable of ["", "fence"])
    test(`a waiter whose process may not run membarrier turns its channel to seq_cst publishing, and no wake-up is lost (6)${disable ? " (not with that switched off)" : ""}`, async () => {
      build();
      const name = uniqueName("fence");
      const env = disable ? { ...testLib(), PSY_TEST_DISABLE: disable } : {};
      const publisher = new Puppet(1, env);
      await publisher.do(`open ipc://${name} SPSC 65536 producer`);
      expect(fenceMode(name)).toBe(layout.FENCE_ASYMMETRIC); // this machine has membarrier
      const waiter = new Puppet(9, env, [launcher]);
      await waiter.do(`open ipc://${name} - - consumer`);
      expect(fenceMode(name)).toBe(disable ? layout.FENCE_ASYMMETRIC : layout.FENCE_SYMMETRIC);
      if (disable) return void (await Promise.all([publisher.exit(), waiter.exit()]));
      const delays: number[] = [];
      for (let round = 0; round < 200; round++) {
        const waiting = waiter.do("recv 1000");
        await Bun.sleep(round % 3); // land anywhere in its spin, its registration, its sleep
        const start = ms();
        expect((await publisher.do("sendnew 16")).ok).toBe(true);
        expect((await waiting).seq).toBe(round);
        delays.push(ms() - start);
      }
      expect(Math.max(...delays)).toBeLessThan(40); // none waited for the 50 ms safety re-poll
      await Promise.all([publisher.exit(), waiter.exit()]);
    });
});
