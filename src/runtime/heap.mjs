// The garbage-collector budget dray's launcher gives a Bun worker. Plain JS: the launcher
// (src/cli/launch.mjs) runs on Node before any TypeScript loader, and the bench imports it too, so
// that it measures workers started exactly as `bun run worker` starts them.
//
// Why: JavaScriptCore sizes its heap growth by the machine's RAM. On a 24 GB box a worker that keeps
// 7 MB live let its heap reach 45 MB between collections, in the main thread and again in every pool
// thread. BUN_JSC_forceRAMSize, Bun's counterpart of Node's --max-old-space-size (oven-sh/bun#6548),
// makes it size the heap as if the box had that much RAM: a budget for the GC's growth heuristics,
// not a cap on the heap. Measured in bench/README.md: about a fifth less worker RSS, the same
// throughput at concurrency 10 and a few per cent less at 256. Node and Deno run V8, which already
// grows its young generation by a few MB at a time, so nothing is set for them.

/** The budget when DRAY_HEAP_MB is not set, MB. */
export const defaultHeapMb = 256;

/**
 * The variables to add to the environment of a Bun process that runs dray: BUN_JSC_forceRAMSize from
 * DRAY_HEAP_MB (default 256; 0 leaves Bun's own sizing). Nothing when BUN_JSC_forceRAMSize is set
 * already: the user's own choice wins.
 * @param {Record<string, string | undefined>} env
 * @returns {Record<string, string>}
 */
export function bunHeapEnv(env) {
  if (env.BUN_JSC_forceRAMSize !== undefined && env.BUN_JSC_forceRAMSize !== "") return {};
  const raw = env.DRAY_HEAP_MB;
  const mb = raw === undefined || raw === "" ? defaultHeapMb : Number(raw);
  if (!Number.isFinite(mb) || mb < 0) {
    throw new Error(`DRAY_HEAP_MB must be a size in MB (0 leaves Bun's own heap sizing), not "${raw}"`);
  }
  return mb === 0 ? {} : { BUN_JSC_forceRAMSize: String(Math.round(mb * 1024 * 1024)) };
}
