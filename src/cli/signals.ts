/**
 * Stop signals for a command that runs until it is stopped (`dray scheduler`, the parent of
 * `dray worker --processes N`): the first SIGTERM or SIGINT stops gracefully, a later one means now.
 */
import { onShutdownSignal } from "../runtime/mod.ts";

export function onStopSignals(graceful: (signal: string) => void, now: (signal: string) => void): void {
  let first = 0;
  onShutdownSignal((signal) => {
    // Ctrl-C reaches every process of the terminal's group, and a launcher (src/cli/launch.mjs)
    // forwards its own copy: one arriving right behind the first is the same keypress.
    if (first > 0 && Date.now() - first < 1_000) return;
    if (first > 0) return now(signal);
    first = Date.now();
    graceful(signal);
  });
}
