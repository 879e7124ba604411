// The seed's exercise 4: a service that restarts without losing messages. This script sends 2000
// numbered jobs to a service process (itself, with "service") and collects what it reports as
// done; mid-stream it kills the service with SIGKILL, 4 times, starting a new one each time.
// You should see each kill and restart, which jobs a killed service held (finished by its
// successor, or finished twice), then "processed 2000/2000 messages across 4 restarts, none
// lost"; it exits non-zero if a job is missing or done more often than the kills explain.
//   bun examples/fault_tolerant.ts
//
// Why nothing is lost: the service takes a job, does the work, sends its result, and only then
// releases the job. A job the service had taken but not released when it died is delivered again
// to the next consumer (psyne recovers a dead consumer's message, and hands it out once the
// consumer has nothing newer to take, so it comes late), so a kill between "result sent" and
// "released" makes that one job run twice: at most one duplicate per kill, never a loss.
// A result the service was writing when it died is discarded (never delivered torn); its job was
// not released, so it runs again. Jobs sent while no service runs wait in the channel.
import { readdirSync } from "node:fs";
import { ChannelMode, createChannel, defineMessage } from "../src/index.ts";

const Job = defineMessage("Job", { seq: "u32", value: "f64" });
const Done = defineMessage("Done", { seq: "u32", result: "f64", pid: "u32" });
const JOBS = 2000;
const KILLS = 4;
const STOP = 0xffffffff;
const [role, base] = process.argv.slice(2);

if (role === "service") {
  const jobs = createChannel(`${base}-jobs`, { open: "attach", role: "consumer" });
  const done = createChannel(`${base}-done`, { open: "attach", role: "producer" });
  console.log(`[service ${process.pid}] started`);
  for (;;) {
    const job = await jobs.recv(Job, { timeout: 10_000 });
    if (!job) process.exit(1);
    if (job.seq === STOP) break;
    const until = performance.now() + 0.2; // the work (0.2 ms), holding the job
    while (performance.now() < until);
    const result = await Done.allocAsync(done, { timeout: 10_000 });
    result.seq = job.seq;
    result.result = job.value * 2;
    result.pid = process.pid;
    done.send(result);
    job.release(); // only now is the job finished; a kill before this line means it runs again
  }
  jobs.close();
  done.close();
} else {
  const base = `ipc://fault-tolerant-${process.pid}`;
  // SPMC: one producer; any number of service instances could share the jobs
  const jobs = createChannel(`${base}-jobs`, { bufferSize: 64 * 1024, mode: ChannelMode.SPMC, role: "producer" });
  const done = createChannel(`${base}-done`, { bufferSize: 64 * 1024, mode: ChannelMode.MPSC, role: "consumer" });
  const start = () =>
    Bun.spawn([process.execPath, import.meta.path, "service", base], { stdout: "inherit", stderr: "inherit", timeout: 30_000 });
  let service = start();
  const services = [service];

  const producing = (async () => {
    for (let seq = 0; seq < JOBS; seq++) {
      const job = await Job.allocAsync(jobs, { timeout: 10_000 });
      job.seq = seq;
      job.value = seq + 0.5;
      jobs.send(job);
      if (seq % 5 === 4) await Bun.sleep(1); // a steady stream, not one burst
    }
  })();

  const times = new Uint8Array(JOBS); // how often each job was reported done
  let distinct = 0;
  let wrong = 0;
  let restarts = 0;
  const killedAt: number[] = []; // the last job reported before each kill
  const late: number[] = []; // jobs done after a later one: delivered again after a kill
  let highest = -1;
  while (distinct < JOBS) {
    const result = await done.recv(Done, { timeout: 10_000 });
    if (!result) break;
    if (result.seq >= JOBS || result.result !== (result.seq + 0.5) * 2) {
      wrong++;
      continue;
    }
    if (times[result.seq]!++ === 0) {
      distinct++;
      if (result.seq < highest) late.push(result.seq); // its first taker died before finishing it
    }
    highest = Math.max(highest, result.seq);
    if (restarts < KILLS && distinct >= ((restarts + 1) * JOBS) / (KILLS + 1)) {
      killedAt.push(result.seq);
      service.kill("SIGKILL");
      await service.exited;
      service = start();
      services.push(service);
      restarts++;
      console.log(`killed the service (SIGKILL) after ${distinct} jobs; restart ${restarts}: pid ${service.pid}`);
    }
  }
  await producing;
  // Every job has a result, but a job a killed service held is delivered again only once the
  // service finds nothing newer to do (it comes last, out of order): wait until every job is
  // released, or the stop job would overtake it and leave it in the channel.
  const deadline = Date.now() + 10_000;
  while (jobs.stats().bytesInUse > 0 && Date.now() < deadline) await Bun.sleep(10);
  jobs.send(Object.assign(new Job(jobs), { seq: STOP }));
  const code = await service.exited;
  await Promise.all(services.map((s) => s.exited));
  // results that came after the last new one: duplicates of jobs a killed service had reported
  done.drain((r) => times[r.seq]!++, Infinity, Done);
  jobs.close();
  done.close();
  const left = readdirSync("/dev/shm").filter((f) => f.startsWith(`psyne.${base.slice(6)}-`));
  if (left.length) console.log(`left in /dev/shm: ${left.join(", ")}`);

  const duplicates = [...times.keys()].filter((seq) => times[seq]! > 1);
  console.log(
    `delivered again and finished by a restarted service: ${late.length}${late.length ? ` (jobs ${late.join(", ")})` : ""}`,
  );
  console.log(
    `duplicates: ${duplicates.length}${duplicates.length ? ` (jobs ${duplicates.join(", ")}: held by a killed service, so run again)` : ""}`,
  );
  const ok =
    distinct === JOBS &&
    wrong === 0 &&
    late.length + duplicates.length <= restarts && // at most the one job each killed service held...
    duplicates.every((seq) => killedAt.some((k) => seq >= k && seq < k + 100)) && // ...which it took just before the kill
    times.every((n) => n <= 2) &&
    restarts === KILLS &&
    code === 0 &&
    left.length === 0;
  console.log(
    distinct === JOBS
      ? `processed ${distinct}/${JOBS} messages across ${restarts} restarts, none lost`
      : `processed ${distinct}/${JOBS} messages across ${restarts} restarts, ${JOBS - distinct} LOST`,
  );
  process.exit(ok ? 0 : 1);
}
