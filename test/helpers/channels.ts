// Channels a test file opens in its own process, closed and removed after each test: a test that
// leaves messages behind would otherwise keep its segment (by design).
import { afterEach } from "bun:test";
import { removeChannel } from "../../src/index.ts";

/** Registers the afterEach cleanup; returns `track(channel)`, which returns its argument. */
export function closedAfterEach(): <C extends { close(): void; uri: string }>(channel: C) => C {
  const opened: Array<{ close(): void; uri: string }> = [];
  afterEach(() => {
    for (const c of opened.splice(0)) {
      c.close();
      removeChannel(c.uri);
    }
  });
  return (channel) => {
    opened.push(channel);
    return channel;
  };
}
