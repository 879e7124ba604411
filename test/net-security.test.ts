// Hostile peers, auth tokens and TLS: bad input from the network closes that one connection with
// a stats() count, never crashes the listener's process, never reaches its consumer and never
// disturbs the producer streaming beside it; a wrong or missing token is AUTH_FAILED on the
// connector and never crosses the wire; TLS with a self-signed certificate made here.
import { afterAll, afterEach, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createChannel } from "../src/index.ts";
import { ADOPT_MODE, FrameKind, frame, helloBody, PROOF_BYTES, preamble, randomId } from "../src/net/wire.ts";
import { finish, fixture, ownSegments, reapChildren, report, spawnBun } from "./helpers";
import { CuttingProxy, listeningOn, RawPeer, socketLeft, socketPath, spawnPeer } from "./helpers/net";

setDefaultTimeout(60_000);
afterEach(reapChildren);
afterAll(() => expect(ownSegments()).toEqual([]));

const join2 = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
};

/** A peer that completes the handshake by hand (no token), then sends `after`. */
async function handshaken(target: { hostname?: string; port?: number; unix?: string }): Promise<RawPeer> {
  const peer = await RawPeer.connect(target);
  peer.send(join2(preamble(), frame(FrameKind.HELLO, ADOPT_MODE, 0, helloBody(randomId(), randomId(), randomId(), false))));
  await peer.bytes(8 + 16 + 64);
  peer.send(frame(FrameKind.PROOF, 0, 0, new Uint8Array(PROOF_BYTES)));
  await peer.bytes(8 + 16 + 64 + 16 + 72); // ACCEPT
  return peer;
}

function header(length: number, kind: number, a: number, b: number): Uint8Array {
  const out = new Uint8Array(16);
  const view = new DataView(out.buffer);
  view.setUint32(0, length, true);
  view.setUint32(4, kind, true);
  view.setUint32(8, a, true);
  view.setUint32(12, b, true);
  return out;
}

describe("hostile peers", () => {
  for (const scheme of ["tcp", "unix"] as const)
    test(`${scheme}: garbage, wrong magic or version, oversized frames, a trickle and silence each close only their connection; the stream beside them arrives intact`, async () => {
      const COUNT = 20_000;
      const path = socketPath("hostile");
      const common = { count: COUNT, seed: 3, maxSize: 500 };
      const consumer = spawnPeer(
        { ...common, uri: scheme === "tcp" ? "tcp://127.0.0.1:0" : `unix://${path}`, role: "consume", producers: 1, stayMs: 60_000, options: { listen: true, mode: "MPSC", bufferSize: 65536 } },
        { env: { PSYNE_DEBUG: "1" } },
      );
      const address = await listeningOn(consumer);
      const target = scheme === "tcp" ? { hostname: "127.0.0.1", port: Number(address.split(":")[1]) } : { unix: path };
      const producer = spawnPeer({ ...common, uri: scheme === "tcp" ? `tcp://${address}` : `unix://${path}`, role: "produce", options: { mode: "MPSC", bufferSize: 65536 } });

      const hostile: Array<[string, () => Promise<RawPeer>]> = [
        ["garbage", async () => { const p = await RawPeer.connect(target); p.send(crypto.getRandomValues(new Uint8Array(4096))); return p; }],
        ["wrong magic", async () => { const p = await RawPeer.connect(target); p.send(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); return p; }],
        ["wrong version", async () => { const p = await RawPeer.connect(target); const b = preamble(); b[4] = 99; p.send(join2(b, frame(FrameKind.HELLO, ADOPT_MODE, 0, helloBody(randomId(), randomId(), randomId(), false)))); return p; }],
        ["a frame longer than the channel", async () => { const p = await handshaken(target); p.send(header(65536, FrameKind.MSG, 1, 1)); return p; }],
        ["a length of 2^31", async () => { const p = await handshaken(target); p.send(header(2 ** 31, FrameKind.MSG, 1, 1)); return p; }],
        ["an unknown frame kind", async () => { const p = await handshaken(target); p.send(header(0, 99, 0, 0)); return p; }],
        ["a body on an acknowledgement", async () => { const p = await handshaken(target); p.send(header(8, FrameKind.ACK, 0, 1)); return p; }],
        ["silence after connecting", async () => RawPeer.connect(target)],
        ["one byte every 100 ms", async () => {
          const p = await RawPeer.connect(target);
          const bytes = join2(preamble(), frame(FrameKind.HELLO, ADOPT_MODE, 0, helloBody(randomId(), randomId(), randomId(), false)));
          let stop = false;
          p.closed.then(() => (stop = true));
          (async () => { for (let i = 0; i < bytes.length && !stop; i++) { p.send(bytes.subarray(i, i + 1)); await Bun.sleep(100); } })();
          return p;
        }],
      ];
      const started = performance.now();
      const peers = await Promise.all(hostile.map(([, open]) => open()));
      // half a message, then gone: nothing of it may reach the consumer
      const half = await handshaken(target);
      half.send(join2(header(100, FrameKind.MSG, 256, 1), new Uint8Array(50)));
      half.end();
      await Promise.all(peers.map((p) => p.closed)); // every one was closed by the listener
      expect(performance.now() - started).toBeLessThan(10_000); // the silent ones within the handshake deadline

      const p = await finish(producer);
      expect(p.code).toBe(0);
      consumer.kill("SIGTERM");
      const c = await finish(consumer);
      const result = report<{ received: number; wrong: number; firstWrong: string | null; stats: { errors: Record<string, number> } }>(c);
      expect(result.firstWrong).toBeNull();
      expect(result.wrong).toBe(0); // not one byte of theirs reached the consumer
      expect(result.received).toBe(COUNT);
      const errors = result.stats.errors;
      expect(errors.protocol).toBeGreaterThanOrEqual(6);
      expect(errors.version).toBe(1);
      expect(errors.handshake).toBe(2);
      for (const why of ["not a psyne peer", "protocol version 99", "more than this channel's largest message", "unknown frame kind", "no handshake within"])
        expect(c.stderr).toContain(why); // PSYNE_DEBUG says why
      expect(c.code).toBe(0);
      expect(socketLeft(path)).toBe(false);
    });
});

describe("auth", () => {
  const listen = (token?: string) => {
    const channel = createChannel("tcp://127.0.0.1:0", { listen: true, mode: "MPSC", bufferSize: 65536, ...(token ? { auth: { token } } : {}) });
    return { channel, port: Number(channel.stats().listening!.split(":")[1]) };
  };

  test("the right token connects, and the token never crosses the wire", async () => {
    const secret = `s3cret-${Math.random()}`;
    const { channel: listener, port } = listen(secret);
    const proxy = new CuttingProxy({ hostname: "127.0.0.1", port });
    const connector = createChannel(`tcp://127.0.0.1:${proxy.port}`, { mode: "MPSC", bufferSize: 65536, auth: { token: secret } });
    await connector.ready({ timeout: 5000 });
    connector.send("authorized");
    expect((await listener.recv(undefined, { timeout: 5000 }))?.text()).toBe("authorized");
    const wire = Buffer.concat(proxy.carried);
    expect(wire.byteLength).toBeGreaterThan(100);
    expect(wire.includes(Buffer.from(secret))).toBe(false);
    connector.close();
    proxy.stop();
    listener.close();
  });

  test("a wrong or missing token is AUTH_FAILED from ready(), flush() and the next send, and nothing reaches the consumer", async () => {
    const { channel: listener, port } = listen("right");
    for (const auth of [{ token: "wrong" }, undefined]) {
      const connector = createChannel(`tcp://127.0.0.1:${port}`, { mode: "MPSC", bufferSize: 65536, ...(auth ? { auth } : {}) });
      connector.send("must not arrive"); // before the handshake: kept in the ring
      await expect(connector.ready({ timeout: 5000 })).rejects.toMatchObject({ code: "AUTH_FAILED" });
      await expect(connector.flush({ timeout: 5000 })).rejects.toMatchObject({ code: "AUTH_FAILED" });
      expect(() => connector.send("nor this")).toThrow(expect.objectContaining({ code: "AUTH_FAILED" }));
      connector.close();
    }
    expect(listener.stats().refused).toBe(2);
    expect(listener.receive()).toBeNull();
    listener.close();
  });

  test("a connector with a token refuses a listener that cannot prove it: AUTH_FAILED", async () => {
    const { channel: listener, port } = listen();
    const connector = createChannel(`tcp://127.0.0.1:${port}`, { mode: "MPSC", bufferSize: 65536, auth: { token: "t" } });
    const error = await connector.ready({ timeout: 5000 }).catch((e) => e);
    expect(error.code).toBe("AUTH_FAILED");
    expect(error.message).toContain("did not prove");
    connector.close();
    listener.close();
  });
});

describe("TLS", () => {
  test("with a self-signed certificate made here: messages flow over TLS; a connector that does not trust it gets AUTH_FAILED", async () => {
    const dir = mkdtempSync(join(tmpdir(), "psyne-tls-"));
    try {
      const make = (name: string) => {
        const made = Bun.spawnSync(
          ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.crt`),
            "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
          { stderr: "pipe", timeout: 20_000 },
        );
        expect(made.exitCode).toBe(0);
        return { key: readFileSync(join(dir, `${name}.key`), "utf8"), cert: readFileSync(join(dir, `${name}.crt`), "utf8") };
      };
      const server = make("server");
      const other = make("other");
      const listener = createChannel("tcp://127.0.0.1:0", { listen: true, mode: "SPSC", bufferSize: 65536, tls: { key: server.key, cert: server.cert } });
      const address = listener.stats().listening!;
      // the producer in another process, trusting the certificate
      const producer = spawnBun(fixture("net_tls.ts"), [`tcp://${address}`, server.cert]);
      for (let i = 0; i < 100; i++) expect((await listener.recv(undefined, { timeout: 5000 }))?.text()).toBe(`over tls ${i}`);
      listener.receive(); // releases the last: the producer's flush() resolves
      expect(report<{ sent: number }>(await finish(producer)).sent).toBe(100);

      const untrusting = createChannel(`tcp://${address}`, { mode: "SPSC", bufferSize: 65536, tls: { ca: other.cert } });
      await expect(untrusting.ready({ timeout: 5000 })).rejects.toMatchObject({ code: "AUTH_FAILED" });
      untrusting.close();
      listener.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("exposure", () => {
  test("a listener on every interface with neither auth nor tls warns once (run in a private network namespace)", async () => {
    const run = spawnBun(fixture("net_warn.ts"), [], { wrapper: ["unshare", "-n"] });
    const r = await finish(run);
    expect(r.code).toBe(0);
    const warnings = r.stderr.split("\n").filter((line) => line.includes("reachable from other machines"));
    expect(warnings).toHaveLength(1);
    expect(report<{ loopbackWarned: boolean }>(r).loopbackWarned).toBe(false);
  });
});
