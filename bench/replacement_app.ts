/** Actors of the thread-replacement measurement (bench/replacement.ts). */
import { actor } from "../src/mod.ts";

/** Spins until its thread is killed. */
export const spin = actor("bench_spin", { queue: "bench-replace", timeLimit: 100, maxRetries: 0 }, () => {
  for (;;) {
    // spin
  }
});

/** Says when it started, as epoch ms, so the measurement reads the replacement thread's first job. */
export const started = actor("bench_started", { queue: "bench-replace", maxRetries: 0 }, () => performance.timeOrigin + performance.now());
