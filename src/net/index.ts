// Network transports: each module registers its URI schemes with the channel (src/core/channel.ts
// registerTransport); src/index.ts imports this file for those side effects.
import "./nats"; // nats:// (the NATS client itself loads on first use)
