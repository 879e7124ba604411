// The NATS server the examples use: $NATS_URL if set (a real deployment: nats://host:4222), else a
// nats-server started here on a free loopback port with a temporary JetStream store, stopped when
// the example ends. (Install one with `apt-get install nats-server`, or see nats.io.)
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export async function natsServer(): Promise<{ url: string; stop(): void }> {
  if (process.env.NATS_URL) return { url: process.env.NATS_URL, stop() {} };
  const binary = Bun.which("nats-server") ?? ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"].find((p) => existsSync(p));
  if (!binary) throw new Error("no NATS server: set NATS_URL=nats://host:4222, or install nats-server (apt-get install nats-server)");
  const store = mkdtempSync(join(tmpdir(), "psyne-example-nats-"));
  const server = Bun.spawn([binary, "-a", "127.0.0.1", "-p", "-1", "-js", "-sd", store], { stdout: "ignore", stderr: "pipe" });
  const stop = () => {
    server.kill("SIGKILL");
    rmSync(store, { recursive: true, force: true });
  };
  process.on("exit", stop);
  let log = "";
  for await (const chunk of server.stderr) {
    log += new TextDecoder().decode(chunk);
    if (log.includes("Server is ready")) break;
  }
  const port = /client connections on [^\s]+:(\d+)/.exec(log)?.[1];
  if (!port) throw new Error(`nats-server did not start:\n${log}`);
  return { url: `nats://127.0.0.1:${port}`, stop };
}
