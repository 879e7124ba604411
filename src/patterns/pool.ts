// A pool of worker processes over two channels: tasks (SPMC: each task to exactly one worker, so
// an idle worker takes the next: least-loaded dispatch) and results (MPSC). A worker releases a
// task only after sending its result, so a worker that dies mid-task leaves it to be run again.
// The pool grows while tasks queue up, shrinks to `min` when idle, and replaces dead workers.
import type { Subprocess } from "bun";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { type Channel, ChannelMode, createChannel, removeChannel } from "../core/channel";
import { encodeFrame, encodeValue } from "./codec";
import { PsyneError } from "../core/errors";
import { type Pending, settleFrames } from "./rpc";

export const TASK = 0x314b5450; // "PTK1"
export const RESULT = 0x31535250; // "PRS1"
export const RETIRE_KIND = 0xfffffffe; // a task that tells the worker taking it to exit

export interface PoolOptions {
  /** Workers kept even when idle (default 1). */
  min?: number;
  /** Most workers (default: the number of CPUs). */
  max?: number;
  /** Idle time after which one worker above `min` is retired (default 1000 ms). */
  idleMs?: number;
  /** Bytes of the task and result channels (default 4 MiB). */
  bufferSize?: number;
}

export interface PoolStats {
  workers: number;
  min: number;
  max: number;
  /** Tasks submitted and not finished yet. */
  pending: number;
  completed: number;
  failed: number;
  /** Workers started in all (including replacements). */
  started: number;
  /** Workers that died without being asked to. */
  crashed: number;
}

const workerScript = fileURLToPath(new URL("./pool-worker.ts", import.meta.url));

export class ProcessPool {
  readonly script: string;
  readonly min: number;
  readonly max: number;
  #idleMs: number;
  #base = `pool-${process.pid}-${randomBytes(6).toString("hex")}`;
  #tasks: Channel;
  #results: Channel;
  #workers = new Set<Subprocess>();
  #retiring = 0;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #counts = { completed: 0, failed: 0, started: 0, crashed: 0 };
  #idleSince = performance.now();
  #lastSpawn = 0;
  #timer: ReturnType<typeof setInterval>;
  #pumping = false;
  #closed = false;

  constructor(script: string | URL, options: PoolOptions = {}) {
    this.script = script instanceof URL ? fileURLToPath(script) : script;
    this.min = options.min ?? 1;
    this.max = options.max ?? navigator.hardwareConcurrency;
    this.#idleMs = options.idleMs ?? 1000;
    if (!Number.isInteger(this.min) || this.min < 0 || !Number.isInteger(this.max) || this.max < Math.max(1, this.min))
      throw new PsyneError("INVALID_ARGUMENT", `a pool needs 0 <= min <= max and max >= 1, got min ${this.min}, max ${this.max}`);
    const bufferSize = options.bufferSize ?? 4 << 20;
    this.#tasks = createChannel(`ipc://${this.#base}-tasks`, { mode: ChannelMode.SPMC, bufferSize, open: "create", role: "producer" });
    this.#results = createChannel(`ipc://${this.#base}-results`, { mode: ChannelMode.MPSC, bufferSize, open: "create", role: "consumer" });
    for (let i = 0; i < this.min; i++) this.#spawn();
    this.#timer = setInterval(() => this.#scale(), 50);
    this.#timer.unref();
  }

  /** Runs `task` (a JSON value, string or typed array) on a worker; resolves with its result. */
  submit(task: unknown): Promise<unknown> {
    if (this.#closed) return Promise.reject(new PsyneError("CHANNEL_CLOSED", "the pool is closed"));
    const id = this.#nextId++;
    const frame = encodeFrame(TASK, id, "", encodeValue(task));
    return new Promise((resolve, reject) => {
      this.#pending.set(id, {
        resolve: (value) => this.#pending.delete(id) && resolve(value),
        reject: (error) => this.#pending.delete(id) && reject(error),
      });
      this.#scale();
      this.#tasks.sendAsync(frame).then(
        () => this.#pump(),
        (err) => this.#pending.get(id)?.reject(err),
      );
    });
  }

  stats(): PoolStats {
    return { workers: this.#workers.size - this.#retiring, min: this.min, max: this.max, pending: this.#pending.size, ...this.#counts };
  }

  #spawn(): void {
    const worker = Bun.spawn([process.execPath, workerScript, this.script, `ipc://${this.#base}-tasks`, `ipc://${this.#base}-results`], {
      stdout: "inherit",
      stderr: "inherit",
      stdin: "ignore",
    });
    worker.unref(); // an idle pool does not keep the process alive; pending tasks do
    this.#workers.add(worker);
    this.#counts.started++;
    this.#lastSpawn = performance.now();
    worker.exited.then((code) => {
      this.#workers.delete(worker);
      if (this.#retiring > 0 && code === 0) this.#retiring--;
      else if (!this.#closed) {
        this.#counts.crashed++; // its unfinished task is given back by the channel's crash recovery
        this.#scale();
      }
    });
  }

  #scale(): void {
    if (this.#closed) return;
    const now = performance.now();
    const workers = this.#workers.size - this.#retiring;
    if (this.#pending.size > 0) this.#idleSince = now;
    if (workers < this.min || (this.#pending.size > 0 && workers === 0)) return this.#spawn();
    // grow while more tasks are outstanding than workers can take, one spawn at a time
    if (this.#pending.size > workers && workers < this.max && now - this.#lastSpawn > 20) return this.#spawn();
    // shrink: one worker per idle period, down to min
    if (this.#pending.size === 0 && workers > this.min && now - this.#idleSince > this.#idleMs) {
      this.#idleSince = now;
      this.#retire(1);
    }
  }

  #retire(count: number): void {
    for (let i = 0; i < count; i++) {
      this.#retiring++;
      this.#tasks.sendAsync(encodeFrame(TASK, 0, "", { kind: RETIRE_KIND, bytes: new Uint8Array(0) })).catch(() => {});
    }
  }

  /** Receives results while tasks are pending (a task run twice reports twice: the first wins). */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    await settleFrames(this.#results, RESULT, this.#pending, (ok) => (ok ? this.#counts.completed++ : this.#counts.failed++));
    this.#pumping = false;
  }

  /** Ends every worker (asks them to exit, then kills any that do not) and detaches. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const p of [...this.#pending.values()]) p.reject(new PsyneError("CHANNEL_CLOSED", "the pool was closed"));
    const workers = [...this.#workers];
    this.#retire(workers.length);
    const deadline = setTimeout(() => workers.forEach((w) => w.kill("SIGKILL")), 2_000);
    await Promise.all(workers.map((w) => w.exited));
    clearTimeout(deadline);
    this.#tasks.close();
    this.#results.close();
    // retire messages no worker took would keep the channels alive: they are ours alone
    removeChannel(`ipc://${this.#base}-tasks`);
    removeChannel(`ipc://${this.#base}-results`);
  }
}
