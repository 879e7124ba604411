// A pool of worker processes. Tasks go out on one SPMC channel (each task to exactly one worker,
// so an idle worker takes the next: least-loaded dispatch); each worker sends back on its own SPSC
// channel. A worker announces a task there ("started") before it lets the task go from the task
// channel and runs it, so a task is always held by the channel (which gives it back if the worker
// dies) or known to the pool (which runs it again, at most `maxAttempts` times in all, if the
// worker dies): a worker killed at any instant loses no task. Worker deaths are judged only after
// everything the worker sent has been read. The pool grows while tasks queue up, shrinks to `min`
// when idle, replaces dead workers, and stops for good if its script cannot be loaded.
import type { Subprocess } from "bun";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { type Channel, ChannelMode, createChannel, removeChannel } from "../core/channel";
import { debug } from "../core/debug";
import { PsyneError } from "../core/errors";
import type { Message } from "../core/messages";
import { decodeFrame, encodeFrame, encodeValue, frameOutcome, textOf } from "./codec";
import { describe, integerOption, optionsObject, own } from "./options";

export const TASK = 0x314b5450; // "PTK1": pool to workers; the tag is the attempt number
export const RESULT = 0x31535250; // "PRS1": a worker to the pool
// Kinds of frames that carry no task value (beside the codec's FAILED_KIND).
export const RETIRE_KIND = 0xfffffffe; // a task that tells the worker taking it to exit
export const READY_KIND = 0xfffffff0; // the worker loaded the script
export const LOAD_FAILED_KIND = 0xfffffff1; // it could not: the value is the failure
export const STARTED_KIND = 0xfffffff2; // it runs task ID (tag: the attempt) and has let it go
export const RETIRED_KIND = 0xfffffff3; // it took a retire task and exits

/** Workers that exit before loading the script, in a row, that make the pool give up on it. */
const FAILED_STARTS_LIMIT = 3;
/** After workers die before loading, the next start waits this long, doubling, up to 2 s. */
const START_BACKOFF_MS = 50;

export interface PoolOptions {
  /** Workers kept even when idle (default 1). */
  min?: number | undefined;
  /** Most workers (default: the number of CPUs). */
  max?: number | undefined;
  /** Idle time after which one worker above `min` is retired (default 1000 ms). */
  idleMs?: number | undefined;
  /** Bytes of the task channel and of each worker's result channel (default 4 MiB). */
  bufferSize?: number | undefined;
  /**
   * Runs of a task whose worker dies, in all, before `submit` rejects with a PsyneError of code
   * WORKER_DIED (default 3).
   */
  maxAttempts?: number | undefined;
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

interface Task {
  /** The task as sent, a copy made at submit(): a run again sends these bytes. */
  frame: Uint8Array;
  /** The run the pool expects next (1, 2, ...): a "started" frame of an older one is a stale copy. */
  attempt: number;
  /** How each run whose worker died ended ("killed by SIGKILL", "exited with code 1"). */
  deaths: string[];
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

interface Worker {
  process: Subprocess;
  results: Channel;
  ready: boolean;
  retired: boolean;
  loadError: string | null;
  /** The task it said it runs, until its result arrives. */
  running: { id: number; attempt: number } | null;
  exit: string | null; // how it ended, once it has
  reading: boolean;
  wake: AbortController | null; // aborts its parked read
}

/** The same frame with another tag (a task's next attempt). */
function withTag(frame: Uint8Array, tag: string): Uint8Array {
  const decoded = decodeFrame(TASK, frame)!;
  return encodeFrame(TASK, decoded.id, tag, { kind: decoded.kind, bytes: decoded.value });
}

const workerScript = fileURLToPath(new URL("./pool-worker.ts", import.meta.url));

export class ProcessPool {
  readonly script: string;
  readonly min: number;
  readonly max: number;
  readonly maxAttempts: number;
  #idleMs: number;
  #bufferSize: number;
  #base = `pool-${process.pid}-${randomBytes(6).toString("hex")}`;
  #tasks: Channel;
  #workers = new Set<Worker>();
  #spawned = 0;
  #retiring = 0;
  #pending = new Map<number, Task>();
  #nextId = 1;
  #counts = { completed: 0, failed: 0, started: 0, crashed: 0 };
  #failedStarts = 0; // workers in a row that exited (with a code) before loading the script
  #diedStarting = 0; // workers in a row that died before loading it, however
  #backoff: ReturnType<typeof setTimeout> | null = null;
  #loadError: PsyneError | null = null;
  #idleSince = performance.now();
  #lastSpawn = 0;
  #timer: ReturnType<typeof setInterval>;
  #closed = false;
  #closing: Promise<void> | null = null;

  constructor(script: string | URL, options?: PoolOptions) {
    if (typeof script !== "string" && !(script instanceof URL))
      throw new PsyneError("INVALID_ARGUMENT", `new ProcessPool(script): script must be a path or a file URL, got ${describe(script)}`);
    this.script = script instanceof URL ? fileURLToPath(script) : script;
    const where = "new ProcessPool()";
    const opts = optionsObject(options, where);
    this.min = integerOption(opts, "min", 1, 0, where);
    this.max = integerOption(opts, "max", navigator.hardwareConcurrency, Math.max(1, this.min), where);
    this.#idleMs = integerOption(opts, "idleMs", 1000, 0, where);
    this.maxAttempts = integerOption(opts, "maxAttempts", 3, 1, where);
    const bufferSize = own(opts, "bufferSize");
    if (bufferSize !== undefined && typeof bufferSize !== "number")
      throw new PsyneError("INVALID_ARGUMENT", `${where}: bufferSize must be a number of bytes, got ${describe(bufferSize)}`);
    this.#bufferSize = bufferSize ?? 4 << 20;
    this.#tasks = createChannel(`ipc://${this.#base}-tasks`, { mode: ChannelMode.SPMC, bufferSize: this.#bufferSize, open: "create", role: "producer" });
    this.#timer = setInterval(() => this.#scale(), 50);
    this.#timer.unref();
    try {
      for (let i = 0; i < this.min; i++) this.#spawn();
    } catch (err) {
      void this.close();
      throw err;
    }
  }

  /**
   * Runs `task` (a JSON value, string, typed array or DataView) on a worker; resolves with its
   * result. Rejects (never throws) with RemoteError if the task threw or its result could not be
   * sent, with a PsyneError of code WORKER_DIED after `maxAttempts` runs whose worker died, with
   * the script's load error, and with a PsyneError (INVALID_ARGUMENT) for a task that cannot be sent.
   */
  submit(task: unknown): Promise<unknown> {
    if (this.#loadError) return Promise.reject(this.#loadError);
    if (this.#closed) return Promise.reject(new PsyneError("CHANNEL_CLOSED", "the pool is closed"));
    const id = this.#nextId;
    let frame: Uint8Array;
    try {
      frame = encodeFrame(TASK, id, "1", encodeValue(task));
    } catch (err) {
      return Promise.reject(err);
    }
    this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { frame, attempt: 1, deaths: [], resolve, reject });
      this.#dispatch(id, frame);
      this.#scale();
      for (const worker of this.#workers) void this.#read(worker);
    });
  }

  stats(): PoolStats {
    return { workers: this.#workers.size - this.#retiring, min: this.min, max: this.max, pending: this.#pending.size, ...this.#counts };
  }

  /** Sends a task frame to the task channel. */
  #dispatch(id: number, frame: Uint8Array): void {
    this.#tasks.sendAsync(frame).catch((err) => this.#settle(id, false, err));
  }

  #settle(id: number, ok: boolean, outcome: unknown): void {
    const task = this.#pending.get(id);
    if (!task) return;
    this.#pending.delete(id);
    if (ok) {
      this.#counts.completed++;
      task.resolve(outcome);
    } else {
      this.#counts.failed++;
      task.reject(outcome);
    }
    if (this.#pending.size === 0) for (const worker of this.#workers) worker.wake?.abort(); // stop reading: idle
  }

  #spawn(): void {
    const uri = `ipc://${this.#base}-w${this.#spawned++}`;
    const results = createChannel(uri, { mode: ChannelMode.SPSC, bufferSize: this.#bufferSize, open: "create", role: "consumer" });
    let child: Subprocess;
    try {
      child = Bun.spawn([process.execPath, workerScript, this.script, `ipc://${this.#base}-tasks`, uri], {
        stdout: "inherit",
        stderr: "inherit",
        stdin: "ignore",
      });
    } catch (err) {
      results.close();
      removeChannel(uri);
      throw err;
    }
    child.unref(); // an idle pool does not keep the process alive; pending tasks do
    const worker: Worker = { process: child, results, ready: false, retired: false, loadError: null, running: null, exit: null, reading: false, wake: null };
    this.#workers.add(worker);
    this.#counts.started++;
    this.#lastSpawn = performance.now();
    child.exited.then(() => {
      worker.exit = child.signalCode ? `killed by ${child.signalCode}` : `exited with code ${child.exitCode}`;
      worker.wake?.abort();
      void this.#read(worker); // reads what it sent last, then buries it
    });
    if (this.#pending.size > 0) void this.#read(worker);
  }

  /**
   * Reads a worker's channel: while tasks are pending (parked between frames), and once after it
   * exited, to its end, before judging its death.
   */
  async #read(worker: Worker): Promise<void> {
    if (worker.reading) return;
    worker.reading = true;
    try {
      for (;;) {
        for (let m = worker.results.receive(); m; m = worker.results.receive()) this.#onFrame(worker, m);
        if (worker.exit !== null) return this.#bury(worker);
        if (this.#pending.size === 0 || this.#closed) return;
        const wake = (worker.wake = new AbortController());
        let message: Message | null = null;
        try {
          message = await worker.results.recv(undefined, { signal: wake.signal });
        } catch (err) {
          if (!wake.signal.aborted) throw err;
        } finally {
          worker.wake = null;
        }
        if (message) this.#onFrame(worker, message);
      }
    } catch (err) {
      if (!this.#closed && !worker.results.closed) {
        console.error(`psyne: pool ${this.#base} cannot read worker ${worker.process.pid}: ${textOf((err as Error)?.message ?? err)}`);
        worker.process.kill("SIGKILL"); // its task is judged as a death
      }
    } finally {
      worker.reading = false;
    }
  }

  #onFrame(worker: Worker, message: Message): void {
    const frame = decodeFrame(RESULT, message.bytes());
    if (!frame) return;
    switch (frame.kind) {
      case READY_KIND:
        worker.ready = true;
        this.#failedStarts = this.#diedStarting = 0;
        return;
      case LOAD_FAILED_KIND:
        worker.loadError = new TextDecoder().decode(frame.value);
        return;
      case RETIRED_KIND:
        worker.retired = true;
        return;
      case STARTED_KIND: {
        const task = this.#pending.get(frame.id);
        if (task && Number(frame.tag) === task.attempt) worker.running = { id: frame.id, attempt: task.attempt };
        return;
      }
    }
    if (worker.running?.id === frame.id) worker.running = null;
    if (!this.#pending.has(frame.id)) return; // a result of a run that was not needed any more
    let outcome: ReturnType<typeof frameOutcome>;
    try {
      outcome = frameOutcome(frame);
    } catch (err) {
      return this.#settle(frame.id, false, err);
    }
    if (outcome.ok) this.#settle(frame.id, true, outcome.value);
    else this.#settle(frame.id, false, outcome.error);
  }

  /** A worker exited and all it sent has been read: why, and what becomes of its task. */
  #bury(worker: Worker): void {
    if (!this.#workers.delete(worker)) return; // already buried
    const uri = worker.results.uri;
    worker.results.close();
    try {
      removeChannel(uri);
    } catch {}
    if (worker.retired) {
      this.#retiring--;
      return;
    }
    if (this.#closed) return;
    this.#counts.crashed++;
    const how = worker.exit!;
    debug(this.#tasks.uri, `worker ${worker.process.pid} ${how}${worker.running ? ` running task ${worker.running.id}` : ""}`);
    if (worker.loadError !== null) {
      return this.#fail(new PsyneError("SCRIPT_LOAD_FAILED", `the pool's script ${this.script} cannot be loaded: ${worker.loadError}`));
    }
    if (worker.running) this.#runAgain(worker.running, how);
    else if (!worker.ready) {
      this.#diedStarting++;
      // a signal may come from outside (a test, the OOM killer); an exit code is the script's doing
      if (worker.process.signalCode === null && ++this.#failedStarts >= FAILED_STARTS_LIMIT)
        return this.#fail(
          new PsyneError(
            "SCRIPT_LOAD_FAILED",
            `the pool's script ${this.script} cannot be loaded: its last ${this.#failedStarts} workers exited before loading it (the last ${how})`,
          ),
        );
    }
    this.#scale();
  }

  /** A run of a task ended with its worker: run it again, or give up after maxAttempts. */
  #runAgain(run: { id: number; attempt: number }, how: string): void {
    const task = this.#pending.get(run.id);
    if (!task || task.attempt !== run.attempt) return; // settled, or a stale copy's run
    task.deaths.push(how);
    if (task.deaths.length >= this.maxAttempts) {
      const runs = task.deaths.map((d, i) => `attempt ${i + 1}: ${d}`).join("; ");
      return this.#settle(run.id, false, new PsyneError("WORKER_DIED", `task ${run.id} failed: its worker died on all ${task.deaths.length} attempts (${runs})`));
    }
    task.attempt++;
    this.#dispatch(run.id, withTag(task.frame, String(task.attempt)));
  }

  /** The script cannot be loaded: every pending and later submit rejects; no worker is started. */
  #fail(error: PsyneError): void {
    if (this.#loadError) return;
    this.#loadError = error;
    for (const id of [...this.#pending.keys()]) this.#settle(id, false, error);
  }

  #scale(): void {
    if (this.#closed || this.#loadError || this.#backoff) return;
    const now = performance.now();
    const workers = this.#workers.size - this.#retiring;
    if (this.#pending.size > 0) this.#idleSince = now;
    const wait = this.#diedStarting > 0 ? Math.min(2_000, START_BACKOFF_MS * 2 ** (this.#diedStarting - 1)) - (now - this.#lastSpawn) : 0;
    if (wait > 0) {
      // workers die as they start: no respawn storm (the timer keeps the process up while tasks wait)
      this.#backoff = setTimeout(() => {
        this.#backoff = null;
        this.#scale();
      }, wait);
      if (this.#pending.size === 0) this.#backoff.unref();
      return;
    }
    try {
      if (workers < this.min || (this.#pending.size > 0 && workers === 0)) return this.#spawn();
      // grow while more tasks are outstanding than workers can take, one spawn at a time
      if (this.#pending.size > workers && workers < this.max && now - this.#lastSpawn > 20) return this.#spawn();
    } catch (err) {
      debug(this.#tasks.uri, `cannot start a worker: ${textOf((err as Error)?.message ?? err)}`);
      return;
    }
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

  /** Ends every worker (asks them to exit, then kills any that do not) and detaches. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#backoff) clearTimeout(this.#backoff);
    for (const id of [...this.#pending.keys()]) this.#settle(id, false, new PsyneError("CHANNEL_CLOSED", "the pool was closed"));
    const workers = [...this.#workers];
    this.#retire(workers.length);
    const deadline = setTimeout(() => workers.forEach((w) => w.process.kill("SIGKILL")), 2_000);
    await Promise.all(workers.map((w) => w.process.exited));
    clearTimeout(deadline);
    for (const worker of workers) this.#bury(worker); // after a worker's exit its channel is ours alone
    this.#tasks.close();
    // retire messages no worker took would keep the channel alive: it is ours alone
    removeChannel(`ipc://${this.#base}-tasks`);
  }
}
