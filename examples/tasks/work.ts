// The task module of examples/process_pool.ts: the default export runs in a pool worker process
// for each task and returns its result (tasks and results are JSON values).
export function countPrimes(below: number): number {
  let count = 0;
  for (let n = 2; n < below; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++)
      if (n % d === 0) {
        prime = false;
        break;
      }
    if (prime) count++;
  }
  return count;
}

export default function work(task: { id: number; below: number }) {
  return { id: task.id, primes: countPrimes(task.below), worker: process.pid };
}
