// The seed's exercise 1: a multi-process pipeline, each stage in its own process, linked by SPSC
// channels: generate -> square -> sum -> (result) this script. `generate` sends 500 DoubleVectors
// of 64 numbers (0 to 31999), `square` squares each batch into a new vector in the next channel,
// `sum` adds them up and sends the total back. The stages run at once (each waits only when its
// input is empty or its output full), and an "end" message flows down the pipe behind the data.
// You should see each stage report, then
// "pipeline: generate -> square -> sum in 3 processes: 32000/32000 numbers, sum of squares 10922154672000 (expected 10922154672000)".
//   bun examples/pipeline.ts
import { ChannelMode, createChannel, DoubleVector, removeChannel } from "../src/index.ts";

const BATCHES = 500;
const BATCH = 64;
const LINK = { bufferSize: 64 * 1024, mode: ChannelMode.SPSC }; // small: back-pressure, not buffering
const [stage, base] = process.argv.slice(2);
const links = (b: string) => [`${b}-numbers`, `${b}-squares`, `${b}-result`] as const;

async function generate(out: string) {
  const output = createChannel(out, { ...LINK, role: "producer" });
  for (let b = 0; b < BATCHES; b++) {
    const batch = await DoubleVector.allocAsync(output, BATCH, { timeout: 10_000 });
    for (let k = 0; k < BATCH; k++) batch[k] = b * BATCH + k;
    output.send(batch);
  }
  output.send("end");
  await output.flush({ timeout: 10_000 }); // the next stage has taken everything: now leave
  output.close();
  console.log(`[generate ${process.pid}] sent ${BATCHES} batches of ${BATCH} numbers`);
}

async function square(from: string, to: string) {
  const input = createChannel(from, { ...LINK, role: "consumer" });
  const output = createChannel(to, { ...LINK, role: "producer" });
  let batches = 0;
  for (;;) {
    const m = await input.recv(undefined, { timeout: 10_000 });
    if (!m) throw new Error("square: no input for 10 s");
    if (!(m instanceof DoubleVector)) break; // "end"
    const out = await DoubleVector.allocAsync(output, m.length, { timeout: 10_000 }); // written in place, read in place
    for (let k = 0; k < m.length; k++) out[k] = m[k]! * m[k]!;
    output.send(out);
    batches++;
  }
  output.send("end");
  await output.flush({ timeout: 10_000 });
  input.close();
  output.close();
  console.log(`[square ${process.pid}] squared ${batches} batches`);
}

async function sum(from: string, to: string) {
  const input = createChannel(from, { ...LINK, role: "consumer" });
  const output = createChannel(to, { ...LINK, role: "producer" });
  let total = 0;
  let count = 0;
  for (;;) {
    const m = await input.recv(undefined, { timeout: 10_000 });
    if (!m) throw new Error("sum: no input for 10 s");
    if (!(m instanceof DoubleVector)) break;
    for (const x of m) total += x;
    count += m.length;
  }
  output.sendJson({ count, total });
  input.close();
  output.close();
  console.log(`[sum ${process.pid}] added up ${count} numbers`);
}

if (stage === "generate") await generate(links(base!)[0]);
else if (stage === "square") await square(links(base!)[0], links(base!)[1]);
else if (stage === "sum") await sum(links(base!)[1], links(base!)[2]);
else {
  const base = `ipc://pipeline-${process.pid}`;
  const result = createChannel(links(base)[2], { ...LINK, role: "consumer" });
  // started in reverse order, though any order works: the first opener of a link creates it
  const stages = ["sum", "square", "generate"].map((s) =>
    Bun.spawn([process.execPath, import.meta.path, s, base], { stdout: "inherit", stderr: "inherit", timeout: 30_000 }),
  );
  const answer = await result.recv(undefined, { timeout: 20_000 });
  const { count, total } = (answer?.json() ?? { count: 0, total: NaN }) as { count: number; total: number };
  result.close();
  const codes = await Promise.all(stages.map((s) => s.exited));
  const n = BATCHES * BATCH;
  const expected = ((n - 1) * n * (2 * n - 1)) / 6; // the sum of i*i for i < n
  const ok = count === n && total === expected && codes.every((c) => c === 0);
  if (!ok) for (const link of links(base)) removeChannel(link); // a stage failed: drop what it left
  console.log(`pipeline: generate -> square -> sum in 3 processes: ${count}/${n} numbers, sum of squares ${total} (expected ${expected})`);
  process.exit(ok ? 0 : 1);
}
