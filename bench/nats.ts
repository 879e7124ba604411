// nats:// channels against the official NATS client used directly, on one nats-server in one run:
//  - core publish + subscribe throughput, 64 B and 4 KiB, publisher here, subscriber in another
//    process (the client: a new Uint8Array per publish and `await flush()` every 10 000 / 1 000
//    messages, as its own docs advise, and a callback subscription; psyne: tryAlloc + send into
//    the channel, flush() at the end, and a consumer looping on messages(), or on recv() + drain());
//  - one-way latency by ping-pong with an echo process (round trip / 2), no request-reply;
//  - JetStream durable publish rate (the client: js.publish with 256 in flight; psyne: a durable
//    channel, flush() once at the end, which waits for every PubAck).
// Every message carries its sequence number and the receiver checks it.
//
//   bun bench/nats.ts            (needs nats-server: apt-get install nats-server)
//   BENCH_SCALE=0.1 bun bench/nats.ts    a quick run
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { ByteVector, createChannel } from "../src/index.ts";

const SCALE = Number(process.env.BENCH_SCALE ?? 1);
const RUNS = 3;
const peer = join(import.meta.dir, "peers", "nats-peer.ts");
const now = () => performance.timeOrigin + performance.now();

// ---- the server ---------------------------------------------------------------------------------
const store = mkdtempSync(join(tmpdir(), "psyne-bench-nats-"));
const server = Bun.spawn([Bun.which("nats-server") ?? "/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", store], { stderr: "pipe" });
let log = "";
for await (const chunk of server.stderr) {
  log += new TextDecoder().decode(chunk);
  if (log.includes("Server is ready")) break;
}
const url = `nats://127.0.0.1:${/client connections on [^\s]+:(\d+)/.exec(log)![1]}`;
const cleanup = () => {
  server.kill("SIGKILL");
  rmSync(store, { recursive: true, force: true });
};
process.on("exit", cleanup);

let subjects = 0;
const subject = (tag: string) => `bench.${tag}.${process.pid}.${subjects++}`;

async function spawnPeer(args: string[]) {
  const child = Bun.spawn([process.execPath, peer, ...args], { stdout: "pipe", stderr: "inherit", timeout: 120_000 });
  const reader = child.stdout.getReader();
  let text = "";
  const lines = async function* () {
    for (;;) {
      const nl = text.indexOf("\n");
      if (nl >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        yield line;
        continue;
      }
      const { value, done } = await reader.read();
      if (done) return;
      text += new TextDecoder().decode(value);
    }
  };
  const it = lines();
  const next = async () => (await it.next()).value as string;
  if ((await next()) !== "ready") throw new Error(`peer ${args[0]} did not start`);
  return { child, next };
}

// ---- throughput ---------------------------------------------------------------------------------
interface Result {
  rate: number; // end to end, msg/s
  bad: number;
}

async function clientThroughput(size: number, n: number, flushEvery: number): Promise<Result> {
  const s = subject("client");
  const sub = await spawnPeer(["client-sub", url, s, String(n)]);
  const nc = await connect({ servers: url });
  const start = now();
  for (let i = 0; i < n; i++) {
    const data = new Uint8Array(size); // the client keeps it until written: one per message
    data[0] = i;
    data[1] = i >> 8;
    data[2] = i >> 16;
    data[3] = i >>> 24;
    nc.publish(s, data);
    if (i % flushEvery === flushEvery - 1) await nc.flush();
  }
  await nc.flush();
  const r = JSON.parse(await sub.next());
  await sub.child.exited;
  await nc.close();
  return { rate: n / ((r.lastAt - start) / 1000), bad: r.bad + (n - r.count) };
}

async function psyneThroughput(size: number, n: number, consumer: "psyne-sub" | "psyne-sub-drain"): Promise<Result> {
  const uri = `${url}/${subject("psyne")}`;
  const sub = await spawnPeer([consumer, uri, String(n)]);
  const ch = createChannel(uri, { role: "producer" });
  await ch.ready();
  const start = now();
  for (let i = 0; i < n; i++) {
    const v = ch.tryAlloc(ByteVector, size) ?? (await ByteVector.allocAsync(ch, size)); // waits while the send ring is full
    v[0] = i;
    v[1] = i >> 8;
    v[2] = i >> 16;
    v[3] = i >>> 24;
    ch.send(v);
  }
  await ch.flush();
  const r = JSON.parse(await sub.next());
  await sub.child.exited;
  ch.close();
  return { rate: n / ((r.lastAt - start) / 1000), bad: r.bad + (n - r.count) };
}

// ---- latency --------------------------------------------------------------------------------------
async function clientLatency(rounds: number): Promise<number[]> {
  const s = subject("ping");
  const echo = await spawnPeer(["client-echo", url, s]);
  const nc: NatsConnection = await connect({ servers: url });
  const oneWay: number[] = [];
  let resolve: () => void = () => {};
  nc.subscribe(`${s}.back`, { callback: () => resolve() });
  await nc.flush();
  const data = new Uint8Array(64);
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    const back = new Promise<void>((r) => (resolve = r));
    nc.publish(s, data);
    await back;
    oneWay.push(((performance.now() - t) * 1000) / 2); // microseconds
  }
  echo.child.kill();
  await nc.close();
  return oneWay;
}

async function psyneLatency(rounds: number): Promise<number[]> {
  const uri = `${url}/${subject("ping")}`;
  const echo = await spawnPeer(["psyne-echo", uri]);
  const tx = createChannel(uri, { role: "producer" });
  const rx = createChannel(`${uri}.back`, { role: "consumer" });
  await Promise.all([tx.ready(), rx.ready()]);
  const oneWay: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    const v = new ByteVector(tx, 64);
    v[0] = i;
    tx.send(v);
    const m = await rx.recv(ByteVector);
    if (m![0] !== (i & 255)) throw new Error("wrong reply");
    oneWay.push(((performance.now() - t) * 1000) / 2); // microseconds
  }
  echo.child.kill();
  tx.close();
  rx.close();
  return oneWay;
}

// ---- JetStream ------------------------------------------------------------------------------------
async function clientJetStream(n: number): Promise<number> {
  const s = subject("js-client");
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: s.replaceAll(".", "_"), subjects: [s] });
  const js = jetstream(nc);
  const start = now();
  for (let i = 0; i < n; i += 256) {
    const window = [];
    for (let k = i; k < Math.min(n, i + 256); k++) window.push(js.publish(s, new Uint8Array(64), { msgID: `c-${k}` }));
    await Promise.all(window);
  }
  const rate = n / ((now() - start) / 1000);
  await nc.close();
  return rate;
}

async function psyneJetStream(n: number): Promise<number> {
  const ch = createChannel(`${url}/${subject("js-psyne")}`, { durable: "bench", role: "producer" });
  await ch.ready();
  const start = now();
  for (let i = 0; i < n; i++) {
    const v = ch.tryAlloc(ByteVector, 64) ?? (await ByteVector.allocAsync(ch, 64));
    v[0] = i;
    ch.send(v);
  }
  await ch.flush(); // every PubAck
  const rate = n / ((now() - start) / 1000);
  ch.close();
  return rate;
}

// ---- run and print ----------------------------------------------------------------------------------
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

console.log(`nats-server ${/Version:\s+(\S+)/.exec(log)?.[1]}, ${cpus().length} x ${cpus()[0]?.model}, Bun ${Bun.version}, scale ${SCALE}`);
const rows: string[][] = [];
for (const [size, n, flushEvery] of [
  [64, Math.round(1_000_000 * SCALE), 10_000],
  [4096, Math.round(100_000 * SCALE), 1_000],
] as const) {
  const client: Result[] = [];
  const psyne: Result[] = [];
  const drained: Result[] = [];
  for (let run = 0; run < RUNS; run++) {
    client.push(await clientThroughput(size, n, flushEvery));
    psyne.push(await psyneThroughput(size, n, "psyne-sub"));
    drained.push(await psyneThroughput(size, n, "psyne-sub-drain"));
  }
  const c = median(client.map((r) => r.rate));
  for (const [how, results] of [["messages()", psyne], ["recv()+drain()", drained]] as const) {
    const p = median(results.map((r) => r.rate));
    const bad = [...client, ...results].reduce((s, r) => s + r.bad, 0);
    rows.push([`pub/sub ${size} B (${fmt(n)} msgs), psyne ${how}`, `${fmt(c)} msg/s`, `${fmt(p)} msg/s`, `${(p / c).toFixed(2)}x`, bad ? `${bad} BAD` : "all checked"]);
  }
}
const rounds = Math.max(500, Math.round(10_000 * SCALE));
const cl: number[] = [];
const pl: number[] = [];
for (let run = 0; run < RUNS; run++) {
  cl.push(...(await clientLatency(rounds)));
  pl.push(...(await psyneLatency(rounds)));
}
rows.push([`one-way latency p50 (64 B)`, `${median(cl).toFixed(1)} us`, `${median(pl).toFixed(1)} us`, `${(median(pl) / median(cl)).toFixed(2)}x`, `p99 ${pct(cl, 99).toFixed(0)} / ${pct(pl, 99).toFixed(0)} us`]);
const jn = Math.round(50_000 * SCALE);
const cj: number[] = [];
const pj: number[] = [];
for (let run = 0; run < RUNS; run++) {
  cj.push(await clientJetStream(jn));
  pj.push(await psyneJetStream(jn));
}
rows.push([`JetStream publish 64 B (${fmt(jn)} msgs)`, `${fmt(median(cj))} msg/s`, `${fmt(median(pj))} msg/s`, `${(median(pj) / median(cj)).toFixed(2)}x`, "stored (PubAck)"]);

const header = ["", "official client", "psyne nats://", "psyne / client", "check"];
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const line = (r: string[]) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
console.log(line(header));
console.log(`|${widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`);
for (const r of rows) console.log(line(r));
console.log("(latency: microseconds of performance.now(); ratios above 1 mean psyne is slower)");
cleanup();
process.exit(0);
