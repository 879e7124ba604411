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

for (const [script, says] of [
  ["log_aggregation.ts", "aggregated 600/600 log lines from 3 processes, each in order"],
  ["task_distribution.ts", "1000/1000 tasks done exactly once, 0 wrong results"],
  ["pubsub.ts", "published 500 quotes to 3 subscribers"],
] as const) {
  test(`examples/${script} runs its processes and says: ${says}`, async () => {
    const result = await finish(spawnBun(example(script), [], { timeoutMs: 60_000 }));
    expect(result.stdout).toContain(says);
    expect(result.code).toBe(0);
  });
}
