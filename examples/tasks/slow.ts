// The task module of examples/scaling_pool.ts: a slow task (it waits `ms` milliseconds, as if on
// I/O), so a burst of them queues up and the pool has a reason to grow.
export default async function slow(task: { id: number; ms: number }) {
  await Bun.sleep(task.ms);
  return { id: task.id, worker: process.pid };
}
