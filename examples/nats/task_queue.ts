// A task queue across machines: a distributor publishes 600 tasks to a durable SPMC subject; three
// worker processes (stand-ins for three machines) share them through one JetStream durable
// consumer, each task to one worker; results come back on a durable MPSC subject. Worker 2 is
// killed (SIGKILL) mid-way: the tasks it had taken but not finished go to the others after ackWait.
// You should see "600/600 tasks done", and how many were done twice (at-least-once).
//   bun examples/nats/task_queue.ts            (NATS_URL=nats://host:4222 to use your server)
import { ChannelMode, createChannel, defineMessage } from "../../src/index.ts";
import { natsServer } from "./server.ts";

const TaskMessage = defineMessage("TaskMessage", { task_id: "u32", input: "f64" });
const ResultMessage = defineMessage("ResultMessage", { task_id: "u32", worker_id: "u32", output: "f64" });
const processTask = (input: number) => Math.sqrt(input) * 2;
const TASKS = 600;

const [role, id, base] = process.argv.slice(2);
if (role === "worker") {
  // every worker opens the same durable consumer: together they are one work queue
  const tasks = createChannel(`${base}.tasks`, { mode: ChannelMode.SPMC, durable: "workers", ackWait: 2000, role: "consumer" });
  const results = createChannel(`${base}.results`, { mode: ChannelMode.MPSC, durable: "results" });
  await tasks.ready({ timeout: 20_000 });
  console.log(`worker ${id} ready`);
  for await (const task of tasks.messages(TaskMessage)) {
    await Bun.sleep(2); // the work
    const result = await ResultMessage.allocAsync(results);
    result.task_id = task.task_id;
    result.worker_id = Number(id);
    result.output = processTask(task.input);
    results.send(result);
    await results.flush({ timeout: 20_000 }); // stored before this task is acknowledged (when the loop moves on)
  }
} else {
  const server = await natsServer();
  const base = `${server.url}/tasks.demo.${process.pid}`;
  const results = createChannel(`${base}.results`, { mode: ChannelMode.MPSC, durable: "collector", role: "consumer" });
  const tasks = createChannel(`${base}.tasks`, { mode: ChannelMode.SPMC, durable: "distributor", role: "producer" });
  await Promise.all([results.ready({ timeout: 20_000 }), tasks.ready({ timeout: 20_000 })]);
  const workers = [1, 2, 3].map((n) =>
    Bun.spawn([process.execPath, import.meta.path, "worker", String(n), base], { stdout: "inherit", stderr: "inherit", timeout: 60_000 }),
  );
  for (let i = 0; i < TASKS; i++) {
    const task = await TaskMessage.allocAsync(tasks);
    task.task_id = i;
    task.input = i;
    tasks.send(task);
  }
  await tasks.flush({ timeout: 20_000 }); // all 600 stored in the stream
  const done = new Map<number, number>();
  const byWorker = [0, 0, 0, 0];
  let wrong = 0;
  let killed = false;
  while (done.size < TASKS) {
    const r = await results.recv(ResultMessage, { timeout: 30_000 });
    if (!r) break;
    if (r.output !== processTask(r.task_id)) wrong++;
    done.set(r.task_id, (done.get(r.task_id) ?? 0) + 1);
    byWorker[r.worker_id]!++;
    if (!killed && done.size >= 100) {
      killed = true;
      workers[1]!.kill("SIGKILL"); // a machine lost mid-way
      console.log("worker 2 killed");
    }
  }
  for (const w of workers) w.kill();
  await Promise.all(workers.map((w) => w.exited));
  results.close();
  tasks.close();
  server.stop();
  const twice = [...done.values()].filter((n) => n > 1).length;
  console.log(`worker 1 did ${byWorker[1]}, worker 2 ${byWorker[2]} before it was killed, worker 3 ${byWorker[3]}`);
  console.log(`task queue over NATS: ${done.size}/${TASKS} tasks done, ${wrong} wrong results, ${twice} done twice (at-least-once)`);
  process.exit(done.size === TASKS && wrong === 0 ? 0 : 1);
}
