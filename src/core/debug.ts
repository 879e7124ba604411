// PSYNE_DEBUG=1 logs each channel event with the process id (the C core logs its own events, such
// as recovery, the same way). Unset, debug() is a no-op that costs one branch.
const enabled = !!process.env.PSYNE_DEBUG && process.env.PSYNE_DEBUG !== "0";

export function debug(uri: string, event: string): void {
  if (enabled) console.error(`[psyne ${process.pid}] ${uri}: ${event}`);
}
