/**
 * The runners outside bun:test (the smoke suite on each runtime, the browser suite) report the same
 * way: "ok - ..." / "not ok - ..." per check, "ok - ... # SKIP why" for one that cannot run here,
 * and exactly one last line "N passed, N failed, N skipped", which test/run.mjs reads.
 */
export const tally = { passed: 0, failed: 0, skipped: 0 };

/** Runs one check with a time limit; its note (if any) goes in parentheses after the name. */
export async function check(name: string, body: () => Promise<string | void>, timeoutMs = 30_000): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const note = await Promise.race([
      body(),
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs))),
    ]);
    console.log(`ok - ${name}${note ? ` (${note})` : ""}`);
    tally.passed++;
    return true;
  } catch (error) {
    fail(name, String((error as Error)?.message ?? error));
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/** A failure found outside a check (the runner itself broke, a part CI needs is missing). */
export function fail(name: string, why: string): void {
  console.log(`not ok - ${name}`);
  console.log(`  # ${why.split("\n").join("\n  # ")}`);
  tally.failed++;
}

/** Checks that cannot run here: counted apart, so that the summary does not pass them silently. */
export function skip(names: string[], why: string): void {
  for (const name of names) console.log(`ok - ${name} # SKIP ${why}`);
  tally.skipped += names.length;
}

export function assert(ok: unknown, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

/** The summary line, then the exit code: 1 when anything failed. */
export function finish(): never {
  console.log(`${tally.passed} passed, ${tally.failed} failed, ${tally.skipped} skipped`);
  process.exit(tally.failed > 0 ? 1 : 0);
}
