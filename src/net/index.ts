// The network transports: importing this module registers their schemes with the channel
// (src/core/channel.ts registerTransport), which never imports them itself.
import "./stream"; // tcp://, unix://
import "./udp"; // udp://
