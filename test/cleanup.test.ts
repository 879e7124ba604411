// Automatic cleanup (src/core/cleanup.ts): a segment nobody is attached to that holds no unread
// message is removed by whichever psyne process opens or closes a channel next; one with unread
// messages stays for a restart; and removal never races a process attaching at that moment.
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { createChannel, removeChannel, removeStaleChannels } from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, testLibrary, uniqueName, waitForLine, waitForStderr } from "./helpers";

setDefaultTimeout(60_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const exists = (name: string) => existsSync(`/dev/shm/psyne.${name}`);

/** Another psyne process opens and closes a channel of its own (and so sweeps). */
async function someoneOpensAChannel(): Promise<void> {
  const other = spawnBun(fixture("sweeper.ts"), ["open", uniqueName("passer-by"), 1]);
  expect(report<{ errors: string[] }>(await finish(other)).errors).toEqual([]);
}

test("a serve() server stopped with SIGTERM leaves its request channel; the next process that opens a channel removes it", async () => {
  const name = uniqueName("svc");
  const server = spawnBun(fixture("rpc_peer.ts"), ["plain-server", `ipc://${name}`, 2]); // no signal handlers: a plain service
  await waitForLine(server, "ready");
  const client = spawnBun(fixture("rpc_peer.ts"), ["client", `ipc://${name}`, "c1", 20]);
  expect((await finish(client)).code).toBe(0);
  server.kill("SIGTERM"); // what docker stop, systemd and kill send
  await server.exited;
  await someoneOpensAChannel();
  for (const until = Date.now() + 2000; exists(name) && Date.now() < until; ) await Bun.sleep(20);
  expect(exists(name)).toBe(false);
});

test("a segment whose processes died with unread messages stays, for a restart to take them", async () => {
  const name = uniqueName("kept");
  const producer = spawnBun(fixture("sweeper.ts"), ["sweep", 0]); // (just a process to kill)
  await finish(producer);
  const left = createChannel(`ipc://${name}`, 8192);
  left.send("for the restart");
  left.close(); // kept: it holds an unread message
  await someoneOpensAChannel();
  expect(exists(name)).toBe(true);
  const restart = createChannel(`ipc://${name}`, { open: "attach" });
  expect(restart.receive()?.text()).toBe("for the restart");
  restart.close();
  expect(exists(name)).toBe(false);
});

test("a process attaching while the cleanup removes that very segment waits, then gets a fresh channel that works", async () => {
  const name = uniqueName("race");
  const dead = spawnBun(fixture("sweeper.ts"), ["hold", name]); // attached, nothing unread, then SIGKILLed
  await waitForLine(dead, "holding");
  dead.kill("SIGKILL");
  await dead.exited;
  const sweeper = spawnBun(fixture("sweeper.ts"), ["sweep", 1000, name], {
    env: { PSYNE_LIB: testLibrary(), PSY_HOOK: "remove_checked", PSY_HOOK_STALL_MS: "300" },
  });
  await waitForStderr(sweeper, "psyne-hook: stall remove_checked"); // it judged the segment stale, holds its lock
  const start = performance.now();
  const opener = createChannel(`ipc://${name}`, { bufferSize: 8192, role: "producer" }); // waits for it
  const waited = performance.now() - start;
  opener.send("after the cleanup");
  const other = createChannel(`ipc://${name}`, { open: "attach", role: "consumer" }); // the same, new, channel
  expect(other.receive()?.text()).toBe("after the cleanup");
  other.close();
  opener.close();
  expect(report<{ removed: number }>(await finish(sweeper)).removed).toBeGreaterThanOrEqual(1);
  expect(waited).toBeGreaterThan(100); // it really opened during the removal
});

test("two sweeps at once: removeStaleChannels() waits out the automatic cleanup's brief probe of a segment instead of taking it for a live process", async () => {
  const name = uniqueName("two-sweeps");
  const dead = spawnBun(fixture("sweeper.ts"), ["hold", name, "unread"]); // leaves a message: the automatic cleanup keeps it
  await waitForLine(dead, "holding");
  dead.kill("SIGKILL");
  await dead.exited;
  const sweeper = spawnBun(fixture("sweeper.ts"), ["sweep", 200, name], {
    env: { PSYNE_LIB: testLibrary(), PSY_HOOK: "remove_locked", PSY_HOOK_STALL_MS: "40" },
  });
  await waitForStderr(sweeper, "psyne-hook: stall remove_locked"); // its probe holds the segment's write lock
  expect(removeStaleChannels({ prefix: name })).toEqual([name]);
  expect(exists(name)).toBe(false);
  expect(report<{ removed: number }>(await finish(sweeper)).removed).toBe(0);
});

test("a dead client's reply channel is removed even with replies unread: nobody else can ever read it", async () => {
  const name = uniqueName("gone-client");
  const server = spawnBun(fixture("rpc_peer.ts"), ["plain-server", `ipc://${name}`, 2]);
  await waitForLine(server, "ready");
  const client = spawnBun(fixture("rpc_peer.ts"), ["client", `ipc://${name}`, "c1", 100000]);
  const replyChannels = () => readdirSync("/dev/shm").filter((f) => f.startsWith(`psyne.${name}.r.`));
  for (const until = Date.now() + 10_000; replyChannels().length === 0 && Date.now() < until; ) await Bun.sleep(5);
  expect(replyChannels().length).toBe(1);
  client.kill("SIGKILL"); // with requests in flight: replies pile up unread
  server.kill("SIGKILL");
  await Promise.all([client.exited, server.exited]);
  await someoneOpensAChannel();
  for (const until = Date.now() + 2000; replyChannels().length && Date.now() < until; ) await Bun.sleep(20);
  expect(replyChannels()).toEqual([]);
  removeChannel(name); // the request channel keeps the requests no server answered, for the next server
});
