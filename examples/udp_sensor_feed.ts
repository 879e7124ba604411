// The seed's UDP multicast: a sensor process publishes 200 frames (100 Hz) to the multicast group
// 239.255.42.42; a monitor joins the group and shows each frame as it comes. Datagrams are best
// effort: a late or lost frame is worthless, so it is dropped and counted, never waited for. Both
// use the loopback interface here, so nothing leaves this machine (on a network, give the
// interface's address). You should see "monitor: 200 frames, 0 lost, 0 reordered" (or the
// losses your network had).
//   bun examples/udp_sensor_feed.ts
import { createChannel, defineMessage } from "../src/index.ts";

const Frame = defineMessage("SensorFrame", { seq: "u32", t: "f64", readings: ["f32", 32] });
const FRAMES = 200;
const GROUP = "239.255.42.42";
const [role, port] = process.argv.slice(2);

if (role === "sensor") {
  const feed = createChannel(`udp://${GROUP}:${port}`, { multicastInterface: "127.0.0.1" });
  await feed.ready();
  for (let seq = 0; seq < FRAMES; seq++) {
    const frame = new Frame(feed);
    frame.seq = seq;
    frame.t = performance.now();
    for (let i = 0; i < 32; i++) frame.readings[i] = Math.sin(seq * 0.1 + i);
    feed.send(frame);
    await Bun.sleep(10);
  }
  await feed.flush(); // handed to the network
  feed.close();
} else {
  const monitor = createChannel(`udp://${GROUP}:0`, { listen: true, multicastInterface: "127.0.0.1" });
  await monitor.ready();
  const groupPort = monitor.stats().listening!.split(":")[1]!;
  const sensor = Bun.spawn([process.execPath, import.meta.path, "sensor", groupPort], { stdout: "inherit", stderr: "inherit", timeout: 30_000 });
  let frames = 0;
  let wrong = 0;
  for (;;) {
    const frame = await monitor.recv(Frame, { timeout: 1000 }); // a second of silence: the feed is over
    if (!frame) break;
    frames++;
    if (Math.abs(frame.readings[3]! - Math.sin(frame.seq * 0.1 + 3)) > 1e-6) wrong++;
    if (frame.seq % 50 === 0) console.log(`frame ${frame.seq}: reading[0] ${frame.readings[0]!.toFixed(3)}`);
    if (frame.seq === FRAMES - 1) break;
  }
  await sensor.exited;
  const { lost, reordered } = monitor.stats();
  monitor.close();
  console.log(`monitor: ${frames} frames, ${lost} lost, ${reordered} reordered${wrong ? `, ${wrong} WRONG` : ""}`);
  process.exit(frames > 0 && wrong === 0 ? 0 : 1);
}
