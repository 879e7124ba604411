// The seed's IPCService / IPCClient ("Request-Response Over IPC") with serve() and connect().
// This script starts a server process and 3 client processes (itself, with "server" / "client
// ID"); each client makes 100 concurrent requests carrying its own ids, each with a timeout, and
// checks that every reply answers its request. It also makes one request slower than its timeout
// (rejected with code TIMEOUT) and one the handler throws on (rejected with RemoteError). You
// should see each client report "100/100 replies matched", then
// "request-response: 300/300 replies matched their requests across 3 client processes".
//   bun examples/request_response.ts
//
// Unlike the seed, where every client reads the one shared response channel and must skip the
// replies meant for others (and, that channel being SPMC, can take another client's reply so that
// client times out), psyne routes each reply to the client that asked: every client has its own
// reply channel, and request ids are matched for you.
import { ChannelNotFoundError, connect, PsyneError, RemoteError, serve } from "../src/index.ts";

const REQUESTS = 100;
const CLIENTS = 3;
const [role, id, uriArg] = process.argv.slice(2);
type Request = { client: number; request_id: number; op: "double" | "slow" | "fail"; value: number };

if (role === "server") {
  let handled = 0;
  const clients = new Set<number>();
  const server = serve(uriArg!, async (request) => {
    const { client, request_id, op, value } = request as Request;
    handled++;
    clients.add(client);
    if (op === "slow") await Bun.sleep(300); // longer than the client waits
    if (op === "fail") throw new RangeError(`cannot process request ${request_id}`);
    return { client, request_id, result: value * 2 }; // process_request()
  });
  console.log(`server ${process.pid} serving ${uriArg}`);
  process.on("SIGTERM", async () => {
    await server.close(); // requests in flight finish (or go back to the channel) first
    console.log(`server: handled ${handled} requests from ${clients.size} clients`);
    process.exit(0);
  });
} else if (role === "client") {
  const me = Number(id);
  const client = connect(uriArg!);
  const ask = (request_id: number) =>
    client.request({ client: me, request_id, op: "double", value: me * 1000 + request_id }, { timeout: 10_000 }) as Promise<{
      client: number;
      request_id: number;
      result: number;
    }>;
  const replies = await Promise.all(Array.from({ length: REQUESTS }, (_, n) => ask(n)));
  const matched = replies.filter((r, n) => r.client === me && r.request_id === n && r.result === 2 * (me * 1000 + n)).length;

  const timedOut = await client.request({ client: me, request_id: -1, op: "slow", value: 0 }, { timeout: 100 }).catch((e) => e);
  const failed = await client.request({ client: me, request_id: -2, op: "fail", value: 0 }, { timeout: 10_000 }).catch((e) => e);
  client.close();
  const timeoutOk = timedOut instanceof PsyneError && timedOut.code === "TIMEOUT";
  const remoteOk = failed instanceof RemoteError && failed.message === "cannot process request -2";
  console.log(
    `client ${me}: ${matched}/${REQUESTS} replies matched their requests; ` +
      `a 100 ms timeout gave ${timeoutOk ? "TIMEOUT" : `WRONG: ${timedOut}`}; ` +
      `a failing request gave ${remoteOk ? `RemoteError("${failed.message}")` : `WRONG: ${failed}`}`,
  );
  process.exit(matched === REQUESTS && timeoutOk && remoteOk ? 0 : 1);
} else {
  const uri = `ipc://service-${process.pid}`;
  const server = Bun.spawn([process.execPath, import.meta.path, "server", "0", uri], { stdout: "inherit", stderr: "inherit", timeout: 30_000 });

  // connect() throws ChannelNotFoundError until the server has created the channel
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      connect(uri).close();
      break;
    } catch (e) {
      if (!(e instanceof ChannelNotFoundError) || Date.now() > deadline || server.exitCode !== null) {
        server.kill();
        await server.exited;
        throw e;
      }
      await Bun.sleep(50);
    }
  }

  const clients = Array.from({ length: CLIENTS }, (_, n) =>
    Bun.spawn([process.execPath, import.meta.path, "client", String(n + 1), uri], { stdout: "pipe", stderr: "inherit", timeout: 30_000 }),
  );
  const outputs = await Promise.all(clients.map((c) => new Response(c.stdout).text()));
  const codes = await Promise.all(clients.map((c) => c.exited));
  for (const output of outputs) process.stdout.write(output);
  server.kill("SIGTERM");
  const serverCode = await server.exited;
  const matched = outputs.reduce((sum, o) => sum + Number(/(\d+)\/\d+ replies matched/.exec(o)?.[1] ?? 0), 0);
  const ok = codes.every((c) => c === 0) && serverCode === 0 && matched === CLIENTS * REQUESTS;
  console.log(`request-response: ${matched}/${CLIENTS * REQUESTS} replies matched their requests across ${CLIENTS} client processes`);
  process.exit(ok ? 0 : 1);
}
