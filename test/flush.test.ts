// flush(): a producer waits until the messages it sent were taken (issue: a user wrote `await
// ch.drain()` at the end of a producer, as with a stream). Across processes, in every mode.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { ChannelMode, createChannel, removeChannel } from "../src/index.ts";
import { ownSegments, reapChildren, uniqueName } from "./helpers";
import { Puppet } from "./helpers/puppet.ts";

setDefaultTimeout(60_000);

/** CPU time a process has used so far, in clock ticks (user + system; 100 per second on Linux). */
function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]);
}
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

describe("flush()", () => {
  for (const mode of [ChannelMode.SPSC, ChannelMode.MPSC, ChannelMode.SPMC, ChannelMode.MPMC])
    test(`${mode}: resolves only once a consumer took the last message this handle sent, and parks meanwhile`, async () => {
      const uri = `ipc://${uniqueName(`flush-${mode}`)}`;
      const consumer = createChannel(uri, { mode, bufferSize: 65536, role: "consumer" });
      const producer = new Puppet(1);
      await producer.do(`open ${uri} - - producer`);
      for (let i = 0; i < 10; i++) expect((await producer.do("sendnew 100")).ok).toBe(true);
      const cpuBefore = cpuTicks(producer.proc.pid);
      let flushed = false;
      const flushing = producer.do("flush 5000").then((r) => ((flushed = true), r));
      for (let i = 0; i < 10; i++) {
        await Bun.sleep(30); // a slow consumer
        expect(flushed).toBe(false);
        consumer.receive()!.release();
      }
      expect(await flushing).toMatchObject({ ok: true });
      expect((await flushing).ms as number).toBeGreaterThan(250);
      expect(cpuTicks(producer.proc.pid) - cpuBefore).toBeLessThan(10); // under 100 ms of 300: parked, not spinning
      await producer.exit();
      consumer.close();
    });

  test("BROADCAST: waits for every live subscriber, not for a dead one", async () => {
    const uri = `ipc://${uniqueName("flush-b")}`;
    const fast = createChannel(uri, { mode: ChannelMode.BROADCAST, bufferSize: 8192, role: "consumer" });
    const dead = new Puppet(9);
    await dead.do(`open ${uri} - - consumer`);
    const producer = new Puppet(1);
    await producer.do(`open ${uri} - - producer`);
    for (let i = 0; i < 5; i++) expect((await producer.do("sendnew 100")).ok).toBe(true);
    let flushed = false;
    const flushing = producer.do("flush 5000").then((r) => ((flushed = true), r));
    while (fast.receive()) {}
    await Bun.sleep(100);
    expect(flushed).toBe(false); // the other subscriber has read nothing
    dead.proc.kill("SIGKILL");
    await dead.proc.exited;
    expect(await flushing).toMatchObject({ ok: true });
    await producer.exit();
    fast.close();
  });

  test("with nobody consuming it rejects with TIMEOUT after the timeout, and with the reason on abort", async () => {
    const uri = `ipc://${uniqueName("flush-t")}`;
    const producer = createChannel(uri, { bufferSize: 8192, role: "producer" });
    await producer.flush(); // nothing sent: resolves at once
    producer.send("nobody takes this");
    const start = performance.now();
    await expect(producer.flush({ timeout: 150 })).rejects.toMatchObject({ code: "TIMEOUT" });
    expect(performance.now() - start).toBeGreaterThanOrEqual(140);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("stop")), 50);
    await expect(producer.flush({ signal: controller.signal })).rejects.toThrow("stop");
    producer.close();
    removeChannel(uri);
  });
});
