// Worker postMessage producer (runs inside worker-consumer.ts's process as a Bun Worker): posts
// COUNT messages of SIZE bytes as Uint8Arrays, at most WINDOW unacknowledged; see worker-consumer.ts.
import { Pattern } from "./pattern.ts";

declare const self: Worker;

let pattern: Pattern;
let mode: "copy" | "transfer";
let size = 0;
let count = 0;
let window = 0;
let sent = 0;
let acked = 0;
let copyBuffer: Uint8Array;
const free: ArrayBuffer[] = []; // transfer: buffers the main thread has given back

function pump(): void {
  const limit = Math.min(count, acked + window);
  if (mode === "copy")
    for (; sent < limit; sent++) {
      pattern.write(copyBuffer, 0, sent);
      self.postMessage(copyBuffer); // structured clone: copies
    }
  else
    for (; sent < limit; sent++) {
      const bytes = new Uint8Array(free.pop() ?? new ArrayBuffer(size));
      pattern.write(bytes, 0, sent);
      self.postMessage(bytes, [bytes.buffer]);
    }
}

self.onmessage = (event: MessageEvent) => {
  const data = event.data;
  if ("mode" in data) {
    ({ mode, size, count, window } = data);
    pattern = new Pattern(size);
    copyBuffer = new Uint8Array(size);
  } else {
    acked = data.acked;
    free.push(...(data.buffers as ArrayBuffer[]));
  }
  pump();
};
