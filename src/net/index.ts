// The network transports: importing this module registers their schemes with the channel
// (src/core/channel.ts registerTransport), which never imports them itself; src/index.ts imports it.
import "./stream"; // tcp://, unix://
import "./udp"; // udp://
import "./nats"; // nats:// (the NATS client itself loads on first use)
