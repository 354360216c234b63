/**
 * Makes `import()` of `.ts` files work on the calling thread. Bun and Deno do it natively; Node 20
 * worker threads do not get tsx's ESM hooks from the parent's `--import tsx`, so register them here.
 * Plain JS so that a thread's entry can call it before it imports any `.ts` (bench/baseline_thread.mjs).
 */
export async function enableTypeScriptImports() {
  if (typeof globalThis.Bun !== "undefined" || typeof globalThis.Deno !== "undefined") return;
  const api = await import("tsx/esm/api");
  api.register();
}
