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
//
// With the budget comes a smaller first step: BUN_JSC_largeHeapSize, the heap a VM may fill before
// its first collection and the least it is sized to after one, from Bun's 8 MB to 4 MB (what JSC
// gives its "medium" heaps). It matters where the live heap is small, as in a pool thread that keeps
// a few MB alive: each VM otherwise holds 8 MB or more of garbage between collections. Measured in
// bench/README.md: worker RSS 112 instead of 117-118 MB at --threads 1 --concurrency 10, 135-138
// instead of 150-152 MB at --threads 2 --concurrency 200, with throughput unchanged within the noise.
//
// Not set: MIMALLOC_PURGE_DELAY. Bun's allocator (mimalloc 3, which also holds the JS heaps) keeps
// freed pages resident for 100 ms before returning them to the OS. Setting 0 (c97a6a1) saved 3-8 MB
// of peak RSS, but returning and re-faulting pages many times a second costs the supervisor and the
// pool threads CPU: on a 2-core VM, medians of interleaved pairs 5-22% less throughput (it lost 12
// of 13 pairs) and a higher p99 of enqueue->start (bench/README.md,
// "Purge delay (e4ff3a3, 2026-12-01)"). A user who prefers the memory can still set it.

/** The budget when DRAY_HEAP_MB is not set, MB. */
export const defaultHeapMb = 256;

/** BUN_JSC_largeHeapSize given with the budget, bytes. */
export const firstHeapBytes = 4 * 1024 * 1024;

/**
 * The variables to add to the environment of a Bun process that runs dray: BUN_JSC_forceRAMSize from
 * DRAY_HEAP_MB (default 256; 0 leaves Bun's own sizing, and sets nothing) and BUN_JSC_largeHeapSize.
 * A variable the user has set already is left out: their own choice wins.
 * @param {Record<string, string | undefined>} env
 * @returns {Record<string, string>}
 */
export function bunHeapEnv(env) {
  const raw = env.DRAY_HEAP_MB;
  const mb = raw === undefined || raw === "" ? defaultHeapMb : Number(raw);
  if (!Number.isFinite(mb) || mb < 0) {
    throw new Error(`DRAY_HEAP_MB must be a size in MB (0 leaves Bun's own heap sizing), not "${raw}"`);
  }
  if (mb === 0) return {};
  const out = {};
  if (!isSet(env.BUN_JSC_forceRAMSize)) out.BUN_JSC_forceRAMSize = String(Math.round(mb * 1024 * 1024));
  if (!isSet(env.BUN_JSC_largeHeapSize)) out.BUN_JSC_largeHeapSize = String(firstHeapBytes);
  return out;
}

/** @param {string | undefined} value */
function isSet(value) {
  return value !== undefined && value !== "";
}
