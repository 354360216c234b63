/** Waiting, as the supervisor and the broker need it on the way down. */

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Waits for `p`, but no longer than `ms` (then resolves undefined). For shutdown steps that wait on
 * Redis, which may never answer; the timer is cleared, so nothing keeps the process up afterwards.
 */
export async function within<T>(p: Promise<T> | undefined, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
