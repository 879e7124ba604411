// Clean shutdown: a normal exit detaches, installSignalHandlers() detaches on SIGINT/SIGTERM,
// nothing is installed behind the user's back; PSYNE_DEBUG=1 logs events with the pid.
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { inspectChannel, removeStaleChannels } from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, spawnBun, uniqueName, waitForLine } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const file = (name: string) => `/dev/shm/psyne.${name}`;

test("a process that exits normally without close() detaches, and the last one removes the segment", async () => {
  const name = uniqueName("exit");
  const result = await finish(spawnBun(fixture("lifecycle.ts"), ["exit", `ipc://${name}`]));
  expect(result.code).toBe(0);
  expect(existsSync(file(name))).toBe(false);
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`with installSignalHandlers(), ${signal} detaches and the process still ends by that signal`, async () => {
    const name = uniqueName(`sig-${signal}`);
    const child = spawnBun(fixture("lifecycle.ts"), ["signals", `ipc://${name}`]);
    await waitForLine(child, "ready");
    child.kill(signal);
    const result = await finish(child);
    expect(result.signal).toBe(signal);
    expect(existsSync(file(name))).toBe(false);
  });
}

test("without installSignalHandlers(), psyne installs nothing: SIGTERM leaves a stale segment for gc", async () => {
  const name = uniqueName("nosig");
  const child = spawnBun(fixture("lifecycle.ts"), ["wait", `ipc://${name}`]);
  await waitForLine(child, "ready");
  child.kill("SIGTERM");
  expect((await finish(child)).signal).toBe("SIGTERM");
  expect(inspectChannel(name).state).toBe("stale");
  expect(removeStaleChannels({ prefix: `t${process.pid}-` })).toContain(name);
});

test("PSYNE_DEBUG=1 logs channel events with the process id", async () => {
  const name = uniqueName("debug");
  const child = spawnBun(fixture("lifecycle.ts"), ["exit", `ipc://${name}`], { env: { PSYNE_DEBUG: "1" } });
  const result = await finish(child);
  expect(result.stderr).toContain(`[psyne ${child.pid}] ipc://${name}: opened (SPSC, 4096 bytes`);
  expect(result.stderr).toContain(`[psyne ${child.pid}] ${name}: attached as participant 0`);
  expect(result.stderr).toContain(`[psyne ${child.pid}] ${name}: last to detach: removed`);
  const quiet = await finish(spawnBun(fixture("lifecycle.ts"), ["exit", `ipc://${uniqueName("quiet")}`]));
  expect(quiet.stderr).not.toContain("[psyne");
});
