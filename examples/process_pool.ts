// The seed's ProcessPool: worker processes take tasks from one channel and send results back on
// another. Here the pool does the plumbing: `new ProcessPool(script, { min, max })` starts worker
// processes that run the default export of examples/tasks/work.ts (count the primes below N), and
// `await pool.submit(task)` resolves with that task's result. An idle worker takes the next task,
// so the load spreads without the seed's round-robin. You should see how many tasks each worker
// ran, then "process pool: 200/200 results correct from 2 worker processes".
//   bun examples/process_pool.ts
import { ProcessPool } from "../src/index.ts";
import { countPrimes } from "./tasks/work.ts";

const TASKS = 200;
const pool = new ProcessPool(new URL("./tasks/work.ts", import.meta.url), { min: 2, max: 2 });
type Result = { id: number; primes: number; worker: number };

try {
  const tasks = Array.from({ length: TASKS }, (_, id) => ({ id, below: 2_000 + 100 * id }));
  const results = (await Promise.all(tasks.map((task) => pool.submit(task)))) as Result[];

  const correct = results.filter((r, i) => r.id === i && r.primes === countPrimes(tasks[i]!.below)).length;
  const perWorker = new Map<number, number>();
  for (const r of results) perWorker.set(r.worker, (perWorker.get(r.worker) ?? 0) + 1);
  console.log(`per worker: ${[...perWorker].map(([pid, n]) => `pid ${pid}: ${n} tasks`).join(", ")}`);
  console.log("pool.stats():", JSON.stringify(pool.stats()));
  console.log(`process pool: ${correct}/${TASKS} results correct from ${perWorker.size} worker processes`);
  await pool.close();
  process.exit(correct === TASKS ? 0 : 1);
} catch (e) {
  await pool.close(); // no orphaned workers, no segments left
  throw e;
}
