// Request-response across processes: many clients, several servers, replies routed to the client
// that asked, timeouts, errors, a server killed and restarted mid-run without losing a request, and a
// server that survives replies it cannot send.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { ChannelNotFoundError, connect, PsyneError, RemoteError, removeChannel, serve } from "../src/index.ts";
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
    s.close();
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
    s.close();
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
    s.close();
  });

  test("a request with no live server times out with a clear error; one that is aborted rejects", async () => {
    const uri = `ipc://${uniqueName("rpc-timeout")}`;
    const s = serve(uri, () => 1);
    const c = connect(uri);
    s.close(); // the server goes away; the client stays attached
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
