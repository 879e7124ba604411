// Drives test/fixtures/puppet.ts: a participant that runs one command at a time, so a test can
// interleave several processes at exact points.
import type { Subprocess } from "bun";
import { fixture, spawnBun, stderrOf, stdoutLine } from "./index";

export type Reply = Record<string, unknown> & { ok?: boolean; seq?: number; producer?: number; error?: string; code?: string };

export class Puppet {
  readonly proc: Subprocess;
  #lines = 1; // the first line is {"ready": true}

  constructor(id: number, env: Record<string, string> = {}, wrapper?: string[]) {
    this.proc = spawnBun(fixture("puppet.ts"), [id], { stdin: "pipe", env, timeoutMs: 40_000, ...(wrapper ? { wrapper } : {}) });
  }

  /** Runs one command; resolves with its JSON reply (rejects if the puppet died first). */
  async do(command: string): Promise<Reply> {
    const index = this.#lines++;
    const stdin = this.proc.stdin as import("bun").FileSink;
    stdin.write(`${command}\n`);
    stdin.flush();
    return JSON.parse(await stdoutLine(this.proc, index)) as Reply;
  }

  /** Sends a command it is expected to die in (a kill point), and waits for the death. */
  async dieIn(command: string): Promise<{ signal: string | null; stderr: string }> {
    const stdin = this.proc.stdin as import("bun").FileSink;
    stdin.write(`${command}\n`);
    stdin.flush();
    await this.proc.exited;
    return { signal: this.proc.signalCode === null ? null : String(this.proc.signalCode), stderr: stderrOf(this.proc) };
  }

  async exit(): Promise<void> {
    const stdin = this.proc.stdin as import("bun").FileSink;
    stdin.write("exit\n");
    stdin.flush();
    await this.proc.exited;
  }
}
