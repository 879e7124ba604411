// The seed's SPMC example: one distributor, several worker processes; each task goes to exactly
// one worker. Results come back on an MPSC channel. This script distributes 1000 tasks to 3
// workers (itself, with "worker ID"). You should see "1000/1000 tasks done exactly once".
//   bun examples/task_distribution.ts
import { ChannelMode, createChannel, defineMessage } from "../src/index.ts";

const TaskMessage = defineMessage("TaskMessage", { task_id: "u32", input: "f64" });
const ResultMessage = defineMessage("ResultMessage", { task_id: "u32", worker_id: "u32", output: "f64" });
const process_task = (input: number) => Math.sqrt(input) * 2;

const [role, id, base] = process.argv.slice(2);
if (role === "worker") {
  const tasks = createChannel(`${base}-tasks`, 4 * 1024 * 1024, ChannelMode.SPMC);
  const results = createChannel(`${base}-results`, 4 * 1024 * 1024, ChannelMode.MPSC);
  for (;;) {
    const task = await tasks.recv(TaskMessage, { timeout: 10_000 });
    if (!task || task.task_id === 0xffffffff) break; // a stop task
    const result = await ResultMessage.allocAsync(results);
    result.task_id = task.task_id;
    result.worker_id = Number(id);
    result.output = process_task(task.input);
    results.send(result);
  }
  await results.flush({ timeout: 10_000 }); // the distributor has taken every result: now leave
  tasks.close();
  results.close();
} else {
  const base = `ipc://tasks-${process.pid}`;
  const tasks = createChannel(`${base}-tasks`, { bufferSize: 4 * 1024 * 1024, mode: ChannelMode.SPMC, role: "producer" });
  const results = createChannel(`${base}-results`, { bufferSize: 4 * 1024 * 1024, mode: ChannelMode.MPSC, role: "consumer" });
  const workers = [1, 2, 3].map((n) =>
    Bun.spawn([process.execPath, import.meta.path, "worker", String(n), base], { stdout: "inherit", stderr: "inherit", timeout: 30_000 }),
  );
  const TASKS = 1000;
  for (let i = 0; i < TASKS; i++) {
    const task = await TaskMessage.allocAsync(tasks);
    task.task_id = i;
    task.input = i;
    tasks.send(task);
  }
  const done = new Map<number, number>();
  const perWorker = new Map<number, number>();
  let wrong = 0;
  while (done.size < TASKS) {
    const result = await results.recv(ResultMessage, { timeout: 10_000 });
    if (!result) break;
    done.set(result.task_id, (done.get(result.task_id) ?? 0) + 1);
    perWorker.set(result.worker_id, (perWorker.get(result.worker_id) ?? 0) + 1);
    if (result.output !== process_task(result.task_id)) wrong++;
  }
  for (let n = 0; n < workers.length; n++) tasks.send(Object.assign(new TaskMessage(tasks), { task_id: 0xffffffff }));
  const codes = await Promise.all(workers.map((w) => w.exited));
  tasks.close();
  results.close();
  const once = [...done.values()].every((c) => c === 1);
  console.log(`per worker: ${[...perWorker].sort().map(([w, n]) => `worker ${w}: ${n}`).join(", ")}`);
  console.log(`${done.size}/${TASKS} tasks done ${once ? "exactly once" : "with duplicates"}, ${wrong} wrong results`);
  process.exit(done.size === TASKS && once && wrong === 0 && codes.every((c) => c === 0) ? 0 : 1);
}
