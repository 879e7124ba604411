// A real nats-server for the tests: started on a free loopback port with a temporary JetStream
// store, killed by pid when the test is done. Never mocked, never skipped: without nats-server
// the tests fail and say how to install it.
import type { Subprocess } from "bun";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stdoutOf } from "./index";
import { freePort } from "./net";

const INSTALL = "nats-server is not installed: install it with `apt-get install nats-server` (Debian/Ubuntu; 2.9 or newer, JetStream included), or put a nats-server binary on PATH";

/** The nats-server binary; throws the install instructions when there is none. */
export function natsServerPath(): string {
  const found = Bun.which("nats-server") ?? ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"].find((p) => existsSync(p));
  if (!found) throw new Error(INSTALL);
  return found;
}

export interface NatsServer {
  /** Client port on 127.0.0.1. */
  readonly port: number;
  /** nats://127.0.0.1:PORT */
  readonly url: string;
  readonly pid: number;
  /** Cluster route port (clustered servers only). */
  readonly routePort: number | null;
  /** SIGKILL, and wait until it is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same ports with the same store (after kill()). */
  restart(): Promise<void>;
  /** Everything it logged (stderr). */
  log(): string;
}

const running = new Set<Subprocess>();
const dirs = new Set<string>();
process.on("exit", () => {
  for (const p of running) p.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface StartOptions {
  /** JetStream on (default true). */
  jetstream?: boolean;
  /** A given client port (default: a free one, -p -1). */
  port?: number;
  /** For a cluster member: its name, the cluster's name and the routes to join. */
  cluster?: { serverName: string; routes: string[]; routePort: number };
  extra?: string[];
}

async function launch(args: string[]): Promise<{ proc: Subprocess<"ignore", "ignore", "pipe">; port: number; log: () => string }> {
  const proc = Bun.spawn([natsServerPath(), ...args], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  running.add(proc);
  proc.exited.then(() => running.delete(proc));
  let text = "";
  let port = 0;
  let readyResolve!: () => void;
  let readyReject!: (e: Error) => void;
  const isUp = new Promise<void>((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  void (async () => {
    const decoder = new TextDecoder();
    let isReady = false;
    for await (const chunk of proc.stderr) {
      text += decoder.decode(chunk, { stream: true });
      port ||= Number(/Listening for client connections on [^\s]+:(\d+)/.exec(text)?.[1] ?? 0);
      if (!isReady && /Server is ready/.test(text)) {
        isReady = true;
        readyResolve();
      }
    }
    readyReject(new Error(`nats-server exited before it was ready (code ${proc.exitCode}):\n${text}`));
  })();
  const timer = setTimeout(() => readyReject(new Error(`nats-server did not start within 10 s:\n${text}`)), 10_000);
  try {
    await isUp;
  } finally {
    clearTimeout(timer);
  }
  return { proc, port, log: () => text };
}

/** Starts nats-server on 127.0.0.1, a free port (-p -1, read back from its log), JetStream in a temporary store. */
export async function startNats(options: StartOptions = {}): Promise<NatsServer> {
  const dir = mkdtempSync(join(tmpdir(), "psyne-nats-"));
  dirs.add(dir);
  const base = (port: number, routePort: number | null) => {
    const args = ["-a", "127.0.0.1", "-p", String(port)];
    if (options.jetstream !== false) args.push("-js", "-sd", dir);
    if (options.cluster)
      args.push(
        "--server_name", options.cluster.serverName,
        "--cluster_name", "psyne-test",
        "--cluster", `nats://127.0.0.1:${routePort ?? options.cluster.routePort}`,
        "--routes", options.cluster.routes.join(","),
      );
    return [...args, ...(options.extra ?? [])];
  };
  let current = await launch(base(options.port ?? -1, null));
  const port = current.port;
  const routePort = options.cluster?.routePort ?? null;
  let previousLogs = "";
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    routePort,
    get pid() {
      return current.proc.pid;
    },
    async kill() {
      current.proc.kill("SIGKILL");
      await current.proc.exited;
    },
    async restart() {
      previousLogs += current.log();
      current = await launch(base(port, routePort));
    },
    log: () => previousLogs + current.log(),
  };
}

/** Kills every server these helpers started (call in afterAll) and removes their stores. */
export async function stopAllNats(): Promise<void> {
  const procs = [...running];
  for (const p of procs) p.kill("SIGKILL");
  await Promise.all(procs.map((p) => p.exited));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

/**
 * Three clustered servers on loopback (stand-ins for three machines), JetStream clustered. A
 * JetStream cluster needs its routes configured up front, so the route ports are picked first.
 */
export async function startCluster(): Promise<NatsServer[]> {
  const routePorts = [freePort(), freePort(), freePort()];
  const routes = routePorts.map((p) => `nats://127.0.0.1:${p}`);
  return Promise.all(routePorts.map((routePort, i) => startNats({ cluster: { serverName: `n${i + 1}`, routes, routePort } })));
}


/**
 * Reads the "m PRODUCER SEQ" lines of consumer fixtures (test/fixtures/nats_peer.ts) as they come:
 * how many of each message arrived, per child, and whether each child got each producer's
 * messages in order.
 */
export class Tally {
  readonly counts = new Map<string, number>();
  readonly perChild = new Map<Subprocess, number>();
  readonly outOfOrder = new Map<Subprocess, number>();
  held: Array<{ producer: number; seq: number }> = [];
  #offsets = new Map<Subprocess, number>();
  #last = new Map<Subprocess, Map<number, number>>();
  total = 0;
  /** Different messages seen (a predicate checked at every output change must be cheap). */
  distinctTotal = 0;

  update(children: Subprocess[]): this {
    for (const child of children) {
      const text = stdoutOf(child);
      const from = this.#offsets.get(child) ?? 0;
      const end = text.lastIndexOf("\n") + 1;
      if (end <= from) continue;
      this.#offsets.set(child, end);
      const last = this.#last.get(child) ?? new Map<number, number>();
      this.#last.set(child, last);
      for (const line of text.slice(from, end).split("\n")) {
        const match = /^(m|held) (\d+) (\d+)$/.exec(line);
        if (!match) continue;
        const producer = Number(match[2]);
        const seq = Number(match[3]);
        if (match[1] === "held") this.held.push({ producer, seq });
        const key = `${producer}:${seq}`;
        const seen = this.counts.get(key) ?? 0;
        if (seen === 0) this.distinctTotal++;
        this.counts.set(key, seen + 1);
        this.perChild.set(child, (this.perChild.get(child) ?? 0) + 1);
        if ((last.get(producer) ?? -1) >= seq) this.outOfOrder.set(child, (this.outOfOrder.get(child) ?? 0) + 1);
        last.set(producer, seq);
        this.total++;
      }
    }
    return this;
  }

  /** Distinct messages seen, of `producers` (id -> how many it sent). */
  distinct(producers: Record<number, number>): number {
    let n = 0;
    for (const [id, count] of Object.entries(producers)) for (let seq = 0; seq < count; seq++) if (this.counts.has(`${id}:${seq}`)) n++;
    return n;
  }

  missing(producers: Record<number, number>): string[] {
    const out: string[] = [];
    for (const [id, count] of Object.entries(producers)) for (let seq = 0; seq < count; seq++) if (!this.counts.has(`${id}:${seq}`)) out.push(`${id}:${seq}`);
    return out;
  }

  /** Deliveries beyond the first, over all messages. */
  duplicates(): number {
    let n = 0;
    for (const c of this.counts.values()) n += c - 1;
    return n;
  }
}
