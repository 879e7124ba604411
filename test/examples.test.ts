// Every example runs with one command and says what it checked.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync } from "node:fs";
import { example, finish, reapChildren, segments, spawnBun } from "./helpers";

setDefaultTimeout(60_000); // children on a busy 2-core machine need more than the 5 s default

afterEach(reapChildren);

test("the main demo runs producer and consumer as two processes and checks every value", async () => {
  const demo = spawnBun(example("ipc_demo.ts"), [], { timeoutMs: 60_000 });
  const result = await finish(demo);
  expect(existsSync(`/dev/shm/psyne.sensor_data-demo-${demo.pid}`)).toBe(false); // its channel is gone
  expect(result.stdout).toContain("Processed 900 messages, latest avg:");
  expect(result.stdout).toContain("received 1000/1000 in order, every value checked");
  expect(result.stdout).toContain("Producer finished");
  expect(result.code).toBe(0);
}, 70_000);

test("the seed's producer and consumer over tcp://, changing only the URI, check every value", async () => {
  const result = await finish(spawnBun(example("tcp_demo.ts"), [], { timeoutMs: 60_000 }));
  expect(result.stdout).toContain("received 1000/1000 in order, every value checked");
  expect(result.stdout).toContain("Producer finished");
  expect(result.stdout).toContain("tcp demo: producer and consumer ran as two processes over tcp://127.0.0.1:");
  expect(result.code).toBe(0);
}, 70_000);

for (const [script, says] of [
  ["unix_broadcast.ts", "published 500 quotes over unix:///tmp/psyne-quotes-"],
  ["udp_sensor_feed.ts", "monitor: 200 frames, 0 lost, 0 reordered"],
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

// The tutorial's other patterns and its exercises 1, 3 and 4. Each names its channels after its
// own pid (`channel` here, with PID for it), so the test also checks it left no segment behind.
for (const [script, says, channel] of [
  ["ipc_manager.ts", "the consumer received 500/500 in order", "managed-PID"],
  ["request_response.ts", "request-response: 300/300 replies matched their requests across 3 client processes", "service-PID"],
  ["process_pool.ts", "process pool: 200/200 results correct", "pool-PID-"],
  ["debug_channel.ts", "debug channel: 5/5 messages logged as sent and received", "debug-PID"],
  ["secure_names.ts", "secure names: 128-bit random name, segment mode 0o600, a second \"create\" refused, the child validated the request and answered", null],
  ["batching.ts", "batching: 10050/10050 records arrived in 101 messages instead of 10050, every record checked", "batching-PID"],
  ["pipeline.ts", "pipeline: generate -> square -> sum in 3 processes: 32000/32000 numbers, sum of squares 10922154672000 (expected 10922154672000)", "pipeline-PID-"],
  ["scaling_pool.ts", "scaling pool: 2 bursts, each grew 1 -> 4 workers and shrank back to 1; 80/80 tasks done", "pool-PID-"],
  ["fault_tolerant.ts", "processed 2000/2000 messages across 4 restarts, none lost", "fault-tolerant-PID-"],
] as const) {
  test(`examples/${script} says: ${says}`, async () => {
    const child = spawnBun(example(script), [], { timeoutMs: 60_000 });
    const result = await finish(child);
    expect(result.stdout).toContain(says);
    expect(result.code).toBe(0);
    if (channel) expect(segments(channel.replace("PID", String(child.pid)))).toEqual([]);
  });
}

// Beyond one machine: each NATS example starts its own nats-server (a real one, on a free loopback
// port) when NATS_URL is not set, and stops it.
for (const [script, says, channel] of [
  ["nats/sensor_demo.ts", "received 1000/1000 in order over NATS, every value checked", null],
  ["nats/task_queue.ts", "task queue over NATS: 600/600 tasks done, 0 wrong results", null],
  ["nats/c_bridge.ts", "1000/1000 FloatVectors from C over ipc:// -> bridge -> nats://, every value checked", "sensor_data_bridge_PID"],
] as const) {
  test(`examples/${script} says: ${says}`, async () => {
    const child = spawnBun(example(script), [], { timeoutMs: 60_000, env: { NATS_URL: "" } });
    const result = await finish(child);
    expect(result.stdout).toContain(says);
    expect(result.code).toBe(0);
    if (channel) expect(segments(channel.replace("PID", String(child.pid)))).toEqual([]);
  });
}
