// Bun IPC producer: process.send() of each message to the parent, at most WINDOW unacknowledged.
// json: the message is a string (Bun's fastest IPC payload); advanced: a Uint8Array (structured clone).
// Usage (spawned by ipc-consumer.ts): bun ipc-producer.ts json|advanced SIZE COUNT WINDOW
import { Pattern } from "./pattern.ts";

const serialization = process.argv[2];
const [size, count, window] = process.argv.slice(3, 6).map(Number) as [number, number, number];
const pattern = new Pattern(size);
const bytes = new Uint8Array(size); // reused: send() serializes (copies) it at once

let sent = 0;
let acked = 0;
function pump(): void {
  const limit = Math.min(count, acked + window);
  if (serialization === "json") for (; sent < limit; sent++) process.send!(pattern.string(sent));
  else
    for (; sent < limit; sent++) {
      pattern.write(bytes, 0, sent);
      process.send!(bytes);
    }
}
process.on("message", (ack) => {
  acked = ack as number;
  if (acked === count) process.exit(0);
  pump();
});
process.on("disconnect", () => process.exit(acked === count ? 0 : 1)); // the consumer died
pump();
