// Which runtimes dray runs on, checked first by each entry (`dray`, `dray/testing`, `dray/extend`
// and the CLI), so that an older or other runtime fails with one line naming the minimum instead of
// a stack from deep inside a dependency. Plain JS so that the launcher can check before anything else.

/** Oldest majors dray runs on: Node 20 (worker threads' resource limits, module.register for tsx), Deno 2 (package.json, node: modules). */
export const MINIMUM = { node: 20, deno: 2 };

/**
 * Why this runtime cannot run dray, or undefined when it can.
 * @param {{ node?: string, bun?: string } | undefined} versions `process.versions`
 * @param {string | undefined} deno `Deno.version.deno`
 * @returns {string | undefined}
 */
export function unsupportedRuntime(versions, deno) {
  const wanted = `dray needs Node >= ${MINIMUM.node}, Bun, or Deno >= ${MINIMUM.deno}`;
  if (deno !== undefined) return major(deno) >= MINIMUM.deno ? undefined : `${wanted}; this is Deno ${deno}`;
  if (versions?.bun !== undefined) return undefined;
  if (versions?.node !== undefined) return major(versions.node) >= MINIMUM.node ? undefined : `${wanted}; this is Node ${versions.node}`;
  return `${wanted}; this runtime is none of them`;
}

/** @param {string} version */
function major(version) {
  return Number(/^v?(\d+)/.exec(version)?.[1] ?? 0);
}

const reason = unsupportedRuntime(globalThis.process?.versions, globalThis.Deno?.version?.deno);
if (reason !== undefined) {
  const error = new Error(reason);
  error.name = "UnsupportedRuntime";
  // One line: where it was thrown from says nothing the message does not.
  error.stack = `${error.name}: ${reason}`;
  throw error;
}
