// Request-response across processes: many clients, several servers, replies routed to the client
// that asked, timeouts, errors, a server killed and restarted mid-run without losing a request, a
// server that survives replies it cannot send, and a graceful close() that gives requests back.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ChannelNotFoundError, connect, inspectChannel, PsyneError, RemoteError, removeChannel, serve } from "../src/index.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun, uniqueName, waitForLine } from "./helpers";

setDefaultTimeout(120_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const server = (uri: string, concurrency = 4) => spawnBun(fixture("rpc_peer.ts"), ["server", uri, concurrency], { timeoutMs: 110_000 });
const client = (uri: string, name: string, count: number) => spawnBun(fixture("rpc_peer.ts"), ["client", uri, name, count], { timeoutMs: 110_000 });
type ClientReport = { name: string; done: number; wrong: number; servers: number };

test("4 client processes x 3000 requests, 2 server processes: every reply matched to its request", async () => {
  const uri = `ipc://${uniqueName("rpc")}`;
  const servers = [server(uri), server(uri)];
  await Promise.all(servers.map((s) => waitForLine(s, "ready")));
  const clients = ["a", "b", "c", "d"].map((name) => client(uri, name, 3000));
  const reports = (await Promise.all(clients.map(finish))).map((r) => report<ClientReport>(r));
  for (const r of reports) expect(r).toMatchObject({ done: 3000, wrong: 0 });
  console.log(`servers seen per client: ${reports.map((r) => r.servers).join(", ")}`);
  expect(reports.some((r) => r.servers === 2)).toBe(true); // both servers took requests
  for (const s of servers) s.kill("SIGTERM");
  await Promise.all(servers.map((s) => s.exited));
  removeChannel(uri); // the servers died by signal: nobody removed it
});

test("a server SIGKILLed mid-run and restarted loses no request", async () => {
  const uri = `ipc://${uniqueName("rpc-kill")}`;
  let current = server(uri);
  await waitForLine(current, "ready");
  const clients = ["x", "y"].map((name) => client(uri, name, 4000));
  for (let kill = 0; kill < 5; kill++) {
    await Bun.sleep(150);
    current.kill("SIGKILL");
    await current.exited;
    current = server(uri); // requests sent meanwhile wait in the channel
    await waitForLine(current, "ready");
  }
  const reports = (await Promise.all(clients.map(finish))).map((r) => report<ClientReport>(r));
  for (const r of reports) expect(r).toMatchObject({ done: 4000, wrong: 0 });
  current.kill("SIGTERM");
  await current.exited;
  removeChannel(uri);
});

test("a reply the server cannot send (too large, a BigInt message, a thrown Object.create(null)) rejects that request with a RemoteError saying why; the server process keeps serving", async () => {
  const uri = `ipc://${uniqueName("rpc-unsendable")}`;
  const s = server(uri, 1); // one request loop: had it stopped, nothing would answer
  await waitForLine(s, "ready");
  const c = connect(uri, { bufferSize: 1 << 16 });
  const ask = (request: object) => c.request(request, { timeout: 10_000 }).catch((e: RemoteError) => e) as Promise<RemoteError>;
  const tooLarge = await ask({ bytes: 100_000 });
  expect(tooLarge).toBeInstanceOf(RemoteError);
  expect(tooLarge).toMatchObject({ remoteName: "MessageTooLargeError" });
  expect(tooLarge.message).toMatch(/^reply of 100000 bytes does not fit the reply channel of 65536 bytes/);
  expect(await ask({ throwBigint: true })).toMatchObject({ code: "REMOTE_ERROR", message: "10" });
  const odd = await ask({ throwNullProto: true });
  expect(odd).toBeInstanceOf(RemoteError);
  expect(odd.message).toMatch(/not an Error was thrown: an object with no prototype/);
  expect(await ask({ client: "z", n: 3 })).toMatchObject({ square: 9, server: s.pid });
  expect(s.exitCode).toBeNull();
  c.close();
  s.kill("SIGTERM");
  await s.exited;
});

for (const [how, args, said] of [
  ["closed (await server.close())", [], "closed"],
  ["exiting (process.exit(0), no close())", ["exit"], null],
] as const) {
  test(`a server ${how} mid-request gives the request back: another server process answers it`, async () => {
    const uri = `ipc://${uniqueName("rpc-giveback")}`;
    const a = spawnBun(fixture("rpc_peer.ts"), ["hold", uri, ...args], { stdin: "pipe", timeoutMs: 60_000 });
    await waitForLine(a, "ready");
    const c = connect(uri);
    const pending = c.request({ client: "w", n: 7 }, { timeout: 20_000 });
    await waitForLine(a, "holding"); // server A holds the request, its handler never settles
    const b = server(uri);
    await waitForLine(b, "ready");
    (a.stdin as import("bun").FileSink).write("close\n");
    if (said) await waitForLine(a, said);
    expect(await a.exited).toBe(0);
    expect(await pending).toMatchObject({ n: 7, square: 49, server: b.pid });
    c.close();
    b.kill("SIGTERM");
    await b.exited;
  });
}

describe("in one process", () => {
  test("JSON, strings and typed arrays travel; a throwing handler rejects with RemoteError", async () => {
    const uri = `ipc://${uniqueName("rpc-types")}`;
    const s = serve(uri, (req) => {
      if (req === "boom") throw new TypeError("kaboom");
      return req;
    });
    const c = connect(uri);
    expect(await c.request({ a: [1, "two", null] })).toEqual({ a: [1, "two", null] });
    expect(await c.request("text")).toBe("text");
    expect(await c.request(new Float64Array([1.5, -2]))).toEqual(new Float64Array([1.5, -2]));
    const error = await c.request("boom").catch((e) => e);
    expect(error).toBeInstanceOf(RemoteError);
    expect(error).toMatchObject({ message: "kaboom", remoteName: "TypeError", code: "REMOTE_ERROR" });
    c.close();
    await s.close();
  });

  test("await server.close() lets a handler in flight reply, takes no new request, and leaves no handle on the reply channel", async () => {
    const name = uniqueName("rpc-close");
    const uri = `ipc://${name}`;
    let started = () => {};
    const handling = new Promise<void>((r) => (started = r));
    const s = serve(uri, async (r) => {
      started();
      await Bun.sleep(300);
      return r;
    });
    const c = connect(uri);
    const first = c.request("first", { timeout: 10_000 });
    await handling;
    const closing = s.close();
    const second = c.request("second", { timeout: 10_000 }); // sent while closing: left for another server
    await closing;
    expect(await first).toBe("first");
    const replyChannel = inspectChannel(`${name}.r.${c.id}`);
    expect(replyChannel.processes!.map((p) => p.roles)).toEqual([["consumer"]]); // the client alone
    const s2 = serve(uri, (r) => `${r} by the second server`);
    expect(await second).toBe("second by the second server");
    await s2.close();
    c.close();
  });

  test("a handler still running after closeTimeout: its request goes to another server, and its late result is not sent", async () => {
    const name = uniqueName("rpc-close-late");
    const uri = `ipc://${name}`;
    let started = () => {};
    const handling = new Promise<void>((r) => (started = r));
    let settledLate = false;
    const s = serve(uri, async () => {
      started();
      await Bun.sleep(800);
      settledLate = true;
      return "late, from the closed server";
    }, { closeTimeout: 100 });
    const c = connect(uri);
    const pending = c.request("job", { timeout: 10_000 });
    await handling;
    const s2 = serve(uri, (r) => `${r} answered by the second server`);
    await s.close();
    expect(await pending).toBe("job answered by the second server");
    await s2.close();
    while (!settledLate) await Bun.sleep(20);
    await Bun.sleep(50);
    const replyChannel = inspectChannel(`${name}.r.${c.id}`);
    expect(replyChannel.processes!.map((p) => p.roles)).toEqual([["consumer"]]); // no handle left by the late handler
    c.close();
  });

  test("request() rejects, never throws, for data it cannot send; a DataView arrives as a DataView; options are own properties, checked", async () => {
    const uri = `ipc://${uniqueName("rpc-inputs")}`;
    const s = serve(uri, (r) => r);
    const c = connect(uri);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const [value, problem] of [[10n, /BigInt/], [cyclic, /cyclic/], [() => 1, /function/]] as const) {
      let result: Promise<unknown> | string;
      try {
        result = c.request(value);
      } catch (thrown) {
        result = `threw synchronously: ${thrown}`;
      }
      expect(result).toBeInstanceOf(Promise);
      const error = (await (result as Promise<unknown>).catch((e: PsyneError) => e)) as PsyneError;
      expect(error).toBeInstanceOf(PsyneError);
      expect(error.code).toBe("INVALID_ARGUMENT");
      expect(error.message).toMatch(problem);
    }
    const view = (await c.request(new DataView(new Uint8Array([1, 2, 3, 4]).buffer, 1, 2))) as DataView;
    expect(view).toBeInstanceOf(DataView);
    expect([...new Uint8Array(view.buffer, view.byteOffset, view.byteLength)]).toEqual([2, 3]);
    await expect(c.request(1, { timeout: "5" } as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/timeout/) });
    await expect(c.request(1, { timeout: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(await c.request(1, Object.create({ timeout: 0 }))).toBe(1); // an inherited property is not an option
    c.close();
    await s.close();
  });

  test("a request with timeout Infinity or 2^31 ms waits for its reply (setTimeout alone would end it after 1 ms)", async () => {
    const uri = `ipc://${uniqueName("rpc-long-timeout")}`;
    const s = serve(uri, async (r) => {
      await Bun.sleep(200);
      return r;
    });
    const c = connect(uri);
    expect(await c.request("no limit", { timeout: Number.POSITIVE_INFINITY })).toBe("no limit");
    expect(await c.request("24.8 days", { timeout: 2 ** 31 })).toBe("24.8 days");
    c.close();
    await s.close();
  });

  test("a request with no live server times out with a clear error; one that is aborted rejects", async () => {
    const uri = `ipc://${uniqueName("rpc-timeout")}`;
    const s = serve(uri, () => 1);
    const c = connect(uri);
    await s.close(); // the server goes away; the client stays attached
    await expect(c.request(1, { timeout: 50 })).rejects.toThrow(/got no reply within 50 ms \(no live server is attached\)/);
    await expect(c.request(2, { signal: AbortSignal.abort() })).rejects.toMatchObject({ name: "AbortError" });
    c.close();
    removeChannel(uri); // the timed-out request is still waiting in it
  });

  test("connect() to a URI nobody serves is a ChannelNotFoundError that says so", () => {
    expect(() => connect(`ipc://${uniqueName("nobody")}`)).toThrow(ChannelNotFoundError);
    expect(() => connect(`ipc://${uniqueName("nobody")}`)).toThrow(/no server for/);
  });
});
