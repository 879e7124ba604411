// Every example runs with one command and says what it checked.
import { afterAll, afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { example, finish, reapChildren, segments, spawnBun } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default

afterEach(reapChildren);
afterAll(() => expect(segments("sensor_data-demo-")).toEqual([]));

test("the main demo runs producer and consumer as two processes and checks every value", async () => {
  const result = await finish(spawnBun(example("ipc_demo.ts"), [], { timeoutMs: 60_000 }));
  expect(result.stdout).toContain("Processed 900 messages, latest avg:");
  expect(result.stdout).toContain("received 1000/1000 in order, every value checked");
  expect(result.stdout).toContain("Producer finished");
  expect(result.code).toBe(0);
}, 70_000);
