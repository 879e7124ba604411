// Several processes on one channel: racing creators, role exclusivity in SPSC, roles freed on
// close and on SIGKILL.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ChannelRoleError, createChannel } from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, report, segments, spawnBun, uniqueName, waitForLine } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default

afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

describe("create-or-attach", () => {
  test("four processes opening one name at the same instant end up on one initialized channel", async () => {
    for (let round = 0; round < 3; round++) {
      const uri = `ipc://${uniqueName("race")}`;
      const startAt = Date.now() + 400; // after all four have loaded
      const children = Array.from({ length: 4 }, () => spawnBun(fixture("race_opener.ts"), [uri, startAt, 4, startAt + 600]));
      const results = await Promise.all(children.map(finish));
      for (const r of results) {
        expect(r.code).toBe(0);
        expect(report(r)).toEqual({ attached: 4, bufferSize: 8192 });
      }
    }
  });

  test("processes that close at the same instant still remove the segment (10 rounds of 2)", async () => {
    for (let round = 0; round < 10; round++) {
      const name = uniqueName("close-race");
      const startAt = Date.now() + 300;
      const children = [0, 1].map(() => spawnBun(fixture("race_opener.ts"), [`ipc://${name}`, startAt, 2, startAt + 250]));
      for (const r of await Promise.all(children.map(finish))) expect(r.code).toBe(0);
      expect(segments(name)).toEqual([]);
    }
  });
});

describe("roles in SPSC", () => {
  for (const role of ["producer", "consumer"] as const) {
    test(`a second live ${role} in another process gets ChannelRoleError naming the holder`, async () => {
      const uri = `ipc://${uniqueName(`role-${role}`)}`;
      const holder = spawnBun(fixture("role_holder.ts"), [uri, role], { stdin: "pipe" });
      await waitForLine(holder, "ready");
      expect(() => createChannel(uri, { role })).toThrow(ChannelRoleError);
      expect(() => createChannel(uri, { role })).toThrow(new RegExp(`process ${holder.pid} is already its ${role}`));
      // the other role is free
      const other = createChannel(uri, { role: role === "producer" ? "consumer" : "producer" });
      other.close();
      // the role is free again once its holder closes
      holder.stdin!.end();
      expect(await holder.exited).toBe(0);
      const again = createChannel(uri, { role });
      again.close();
    });
  }

  test("a producer killed with SIGKILL frees its role for the next process", async () => {
    const uri = `ipc://${uniqueName("role-kill")}`;
    const holder = spawnBun(fixture("role_holder.ts"), [uri, "producer"], { stdin: "pipe" });
    await waitForLine(holder, "ready");
    expect(() => createChannel(uri, { role: "producer" })).toThrow(ChannelRoleError);
    holder.kill("SIGKILL");
    await holder.exited;
    const next = createChannel(uri, { role: "producer" });
    expect(next.stats().processes.filter((p) => p.alive)).toHaveLength(1);
    next.close();
  });

  test("a second producer in the same process is refused too", () => {
    const uri = `ipc://${uniqueName("role-local")}`;
    const a = createChannel(uri, { role: "producer" });
    const b = createChannel(uri);
    expect(() => b.send("x")).toThrow(ChannelRoleError);
    b.close();
    a.close();
  });
});

test("stats() lists every attached process with its role", async () => {
  const uri = `ipc://${uniqueName("stats")}`;
  const holder = spawnBun(fixture("role_holder.ts"), [uri, "producer"], { stdin: "pipe" });
  await waitForLine(holder, "ready");
  const me = createChannel(uri, { role: "consumer" });
  const processes = me.stats().processes;
  expect(processes).toContainEqual(expect.objectContaining({ pid: holder.pid, roles: ["producer"], alive: true, self: false }));
  expect(processes).toContainEqual(expect.objectContaining({ pid: process.pid, roles: ["consumer"], self: true }));
  holder.stdin!.end();
  await holder.exited;
  me.close();
});
