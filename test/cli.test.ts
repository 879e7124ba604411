// The psyne command line against live, stale and corrupt channels, and bad arguments.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ChannelMode, createChannel, FloatVector, removeChannel } from "../src/index.ts";
import { finish, ownSegments, reapChildren, spawnBun, uniqueName, waitForStderr } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const cli = join(import.meta.dir, "..", "src", "cli.ts");
const run = (...args: (string | number)[]) => finish(spawnBun(cli, args));

/** A channel left behind with undelivered messages and nobody attached. */
function staleChannel(tag: string): string {
  const name = uniqueName(tag);
  const ch = createChannel(`ipc://${name}`, 8192);
  ch.send("left behind");
  ch.close();
  return name;
}

describe("usage", () => {
  test("--help prints the commands and exits 0; no command exits 2", async () => {
    const help = await run("--help");
    expect(help.code).toBe(0);
    for (const command of ["ls", "stat NAME", "tail NAME", "rm NAME", "gc", "bench"]) expect(help.stdout).toContain(command);
    expect((await run()).code).toBe(2);
  });
  test("an unknown command, a missing name, an extra argument or a bad number exits 2 with the usage", async () => {
    for (const args of [["frobnicate"], ["stat"], ["ls", "extra"], ["tail", "x", "--count", "many"], ["ls", "--bogus"]]) {
      const result = await run(...args);
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("usage: psyne");
    }
  });
});

describe("ls and stat", () => {
  test("ls shows a live channel with its mode and processes, and a stale one as stale", async () => {
    const live = uniqueName("ls-live");
    const ch = createChannel(`ipc://${live}`, { bufferSize: 65536, mode: ChannelMode.MPSC, role: "consumer" });
    const stale = staleChannel("ls-stale");
    const text = await run("ls");
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`${live}\\s+MPSC\\s+64 KiB\\s+0 B\\s+1\\s+live`));
    expect(text.stdout).toMatch(new RegExp(`${stale}\\s+SPSC\\s+8 KiB\\s+\\d+ B\\s+0\\s+stale`));
    const json = JSON.parse((await run("ls", "--json")).stdout);
    expect(json.find((c: { name: string }) => c.name === live)).toMatchObject({ state: "live", mode: "MPSC", capacity: 65536 });
    ch.close();
    removeChannel(stale);
  });

  test("stat shows the header, the cursors and each process with its roles", async () => {
    const name = uniqueName("stat");
    const ch = createChannel(`ipc://${name}`, { bufferSize: 65536 });
    ch.send("one");
    ch.receive();
    const text = await run("stat", `ipc://${name}`);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain("mode      SPSC");
    expect(text.stdout).toContain("1 sent (3 bytes), 0 received");
    expect(text.stdout).toMatch(new RegExp(`\\n0\\s+${process.pid}\\s+producer,consumer\\s+yes`));
    const json = JSON.parse((await run("stat", name, "--json")).stdout);
    expect(json.processes[0]).toMatchObject({ pid: process.pid, roles: ["producer", "consumer"], alive: true });
    ch.close();
  });

  test("stat of a missing channel exits 1; of a corrupt one says why and exits 1", async () => {
    const missing = await run("stat", uniqueName("missing"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("does not exist");
    const corrupt = uniqueName("corrupt");
    writeFileSync(`/dev/shm/psyne.${corrupt}`, "not a channel at all".repeat(1000));
    const result = await run("stat", corrupt);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain("corrupt");
    expect((await run("ls")).stdout).toMatch(new RegExp(`${corrupt}.*corrupt`));
    removeChannel(corrupt);
  });
});

describe("tail", () => {
  test("prints messages as they are sent, without taking them from the consumer", async () => {
    const name = uniqueName("tail");
    const ch = createChannel(`ipc://${name}`, { bufferSize: 65536 });
    const tail = spawnBun(cli, ["tail", name, "--json", "--count", 3, "--timeout", 20_000]);
    await waitForStderr(tail, "psyne: watching");
    ch.send("hello");
    ch.sendJson({ n: 1 });
    const v = new FloatVector(ch, 2);
    v.set([1.5, 2.5]);
    ch.send(v);
    const result = await finish(tail);
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toEqual([
      { type: "text", typeId: 5, length: 5, text: "hello" },
      { type: "json", typeId: 6, length: 7, text: '{"n":1}' },
      { type: "FloatVector", typeId: 1, length: 8, values: [1.5, 2.5] },
    ]);
    // the consumer still gets all three
    expect(ch.receive()!.text()).toBe("hello");
    expect(ch.receive()!.json()).toEqual({ n: 1 });
    expect([...ch.receive(FloatVector)!]).toEqual([1.5, 2.5]);
    ch.close();
  });

  test("tail of a missing channel exits 1", async () => {
    const result = await run("tail", uniqueName("nothing"), "--timeout", 100);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("does not exist");
  });
});

describe("rm and gc", () => {
  test("rm removes a channel (exit 0) and says so when there is none (exit 1)", async () => {
    const name = staleChannel("rm");
    expect((await run("rm", name)).code).toBe(0);
    expect(existsSync(`/dev/shm/psyne.${name}`)).toBe(false);
    const again = await run("rm", name);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(`no channel named ${name}`);
  });

  test("gc removes stale and corrupt channels and leaves live ones", async () => {
    const stale = staleChannel("gc-stale");
    const corrupt = uniqueName("gc-corrupt");
    writeFileSync(`/dev/shm/psyne.${corrupt}`, "garbage");
    const live = uniqueName("gc-live");
    const ch = createChannel(`ipc://${live}`, 4096);
    ch.send("still wanted");
    const result = JSON.parse((await run("gc", "--json", "--prefix", `t${process.pid}-`)).stdout);
    expect(result.removed).toContain(stale);
    expect(result.removed).toContain(corrupt);
    expect(result.removed).not.toContain(live);
    expect(existsSync(`/dev/shm/psyne.${live}`)).toBe(true);
    ch.receive();
    ch.close();
  });
});
