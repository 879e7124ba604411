// The seed's exercise 3: a process pool that scales with the load. `new ProcessPool(script,
// { min: 1, max: 4, idleMs: 300 })` keeps one worker process while idle, starts more (up to 4)
// while tasks queue up, and retires one per 300 ms of idleness down to 1 again. This script sends
// two bursts of 40 slow tasks (examples/tasks/slow.ts: 50 ms each) and prints pool.stats() each
// time the number of workers changes. You should see workers go 1, 2, 3, 4 in each burst and back
// down to 1 after it, then "scaling pool: 2 bursts, each grew 1 -> 4 workers and shrank back to 1; 80/80 tasks done".
//   bun examples/scaling_pool.ts
import { ProcessPool } from "../src/index.ts";

const BURSTS = 2;
const TASKS = 40;
const pool = new ProcessPool(new URL("./tasks/slow.ts", import.meta.url), { min: 1, max: 4, idleMs: 300 });
const t0 = performance.now();

let last = -1;
let peak = 0;
function watch() {
  const s = pool.stats();
  peak = Math.max(peak, s.workers);
  if (s.workers !== last) {
    last = s.workers;
    const t = ((performance.now() - t0) / 1000).toFixed(2);
    console.log(`t=${t}s workers=${s.workers} pending=${s.pending} completed=${s.completed} started=${s.started}`);
  }
}
const watcher = setInterval(watch, 10);

let done = 0;
const report: string[] = [];
try {
  for (let burst = 1; burst <= BURSTS; burst++) {
    console.log(`burst ${burst}: ${TASKS} tasks of 50 ms`);
    peak = 0;
    const results = (await Promise.all(
      Array.from({ length: TASKS }, (_, id) => pool.submit({ id, ms: 50 })),
    )) as { id: number }[];
    done += results.filter((r, id) => r.id === id).length;
    const grewTo = peak;
    const deadline = performance.now() + 10_000; // idle: one worker retired per 300 ms
    while (pool.stats().workers > pool.min && performance.now() < deadline) await Bun.sleep(20);
    watch();
    report.push(`${grewTo}->${pool.stats().workers}`);
  }
} finally {
  clearInterval(watcher);
}
const stats = pool.stats();
console.log("pool.stats():", JSON.stringify(stats));
await pool.close();

const ok = report.every((r) => r === `${pool.max}->${pool.min}`) && done === BURSTS * TASKS && stats.crashed === 0;
console.log(
  ok
    ? `scaling pool: ${BURSTS} bursts, each grew ${pool.min} -> ${pool.max} workers and shrank back to ${pool.min}; ${done}/${BURSTS * TASKS} tasks done`
    : `scaling pool: FAILED: peak->idle workers per burst ${report.join(", ")}; ${done}/${BURSTS * TASKS} tasks done`,
);
process.exit(ok ? 0 : 1);
