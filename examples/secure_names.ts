// The seed's "Security Considerations": an unguessable channel name, an owner-only segment, data
// validated on arrival, and the name handed to the partner out of band. This script creates the
// channels, shows the segment's file mode in /dev/shm (-rw-------), and starts a child (itself,
// with "child") that finds the name in its environment, checks the message it receives and
// answers. You should see "secure names: ... 0o600 ... the child validated the request and
// answered" and a non-zero exit if any check failed.
//   bun examples/secure_names.ts
//
// Why not the seed's name (base + pid + a number below 1,000,000)? The pid is public (ps) and 6
// digits are ~20 bits from a general-purpose PRNG: another local user can guess or simply try all
// of them. 16 bytes from the OS's cryptographic generator (crypto.randomBytes, or
// crypto.getRandomValues) are 128 bits nobody can guess. What guessing buys an attacker is
// getting there first: creating the channel with open permissions before you do and reading what
// you send. `open: "create"` closes that door too: it throws ChannelExistsError rather than attach
// to a segment someone else made. Note that names are not secret from local users (anyone can
// list /dev/shm): the file mode is what keeps others out, so keep the default 0o600.
// The name goes to the child in its environment, not its argv: argv is visible to every user
// (ps, /proc/PID/cmdline), the environment only to the process's owner (/proc/PID/environ).
import { randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { ChannelExistsError, ChannelMode, createChannel } from "../src/index.ts";

function generateSecureChannelName(base: string): string {
  return `ipc://${base}_${randomBytes(16).toString("hex")}`; // 128 random bits; the pid adds nothing
}

if (process.argv[2] === "child") {
  const base = process.env.SECURE_CHANNEL;
  if (!base) throw new Error("SECURE_CHANNEL is not set");
  const requests = createChannel(`${base}.req`, { open: "attach", role: "consumer" });
  const replies = createChannel(`${base}.rep`, { open: "attach", role: "producer" });
  const message = await requests.recv(undefined, { timeout: 10_000 });
  // "Always validate data from IPC channels": its type, its size, its shape, before using it
  let answer: string;
  try {
    if (!message || message.type !== "json" || message.byteLength > 1024) throw new Error(`unexpected message ${message?.type}`);
    const request = message.json() as { op?: unknown; values?: unknown };
    if (request.op !== "sum" || !Array.isArray(request.values) || !request.values.every(Number.isFinite))
      throw new Error("malformed request");
    answer = `sum ${request.values.reduce((a: number, b: number) => a + b, 0)}`;
  } catch (e) {
    answer = `rejected: ${(e as Error).message}`;
  }
  replies.send(answer);
  requests.close();
  replies.close();
} else {
  const uri = generateSecureChannelName("secure");
  const options = { bufferSize: 4096, mode: ChannelMode.SPSC, permissions: 0o600, open: "create" } as const;
  const requests = createChannel(`${uri}.req`, { ...options, role: "producer" });
  const replies = createChannel(`${uri}.rep`, { ...options, role: "consumer" });
  const name = uri.slice("ipc://".length);
  console.log(`channel: ${uri}.req (${name.length - "secure_".length} hex digits of randomness)`);

  const file = `/dev/shm/psyne.${name}.req`;
  const mode = statSync(file).mode & 0o777;
  console.log(`${file}: mode 0o${mode.toString(8)} (${(await Bun.$`ls -l ${file}`.text()).split(" ")[0]})`);

  let squatBlocked = false;
  try {
    createChannel(`${uri}.req`, { open: "create" }).close();
  } catch (e) {
    squatBlocked = e instanceof ChannelExistsError;
  }

  const child = Bun.spawn([process.execPath, import.meta.path, "child"], {
    env: { ...process.env, SECURE_CHANNEL: uri },
    stdout: "inherit",
    stderr: "inherit",
    timeout: 30_000,
  });
  requests.sendJson({ op: "sum", values: [1, 2, 3, 4] });
  const reply = await replies.recv(undefined, { timeout: 10_000 });
  const answer = reply?.text();
  console.log(`child answered: ${answer}`);
  const code = await child.exited;
  requests.close();
  replies.close();
  const gone = !existsSync(file); // the last to detach removed it
  const ok = mode === 0o600 && squatBlocked && answer === "sum 10" && code === 0 && gone;
  console.log(
    `secure names: 128-bit random name, segment mode 0o${mode.toString(8)}, ` +
      `a second "create" ${squatBlocked ? "refused" : "NOT refused"}, ` +
      `${answer === "sum 10" ? "the child validated the request and answered" : "the child did not answer correctly"}` +
      `${gone ? "" : `; ${file} was NOT removed`}`,
  );
  process.exit(ok ? 0 : 1);
}
