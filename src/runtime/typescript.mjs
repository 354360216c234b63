// Makes `import()` of `.ts` files work on the calling thread. Bun and Deno do it natively; Node 20
// needs a loader, and its worker threads do not get the parent's hooks, so each registers its own.
// Only called where a `.ts` module is about to be imported: dray itself runs from compiled JS when
// installed from npm, and a plain `.mjs` app needs no loader at all. tsx is an optional peer
// dependency, loaded only then. Plain JS so that a thread's entry and the launcher can call it before
// any `.ts` is imported.

/** @type {Promise<void> | undefined} */
let registered;

/** @param {string} [what] the module that needs it, for the message when tsx is missing */
export function enableTypeScriptImports(what) {
  if (typeof globalThis.Bun !== "undefined" || typeof globalThis.Deno !== "undefined") return Promise.resolve();
  return (registered ??= register(what));
}

/** @param {string | undefined} what */
async function register(what) {
  let api;
  try {
    api = await import("tsx/esm/api");
  } catch (cause) {
    registered = undefined;
    const error = new Error(
      `${what ?? "a .ts module"} is TypeScript, which Node cannot import without a loader: ` +
      "install tsx in your project (`npm install -D tsx`; dray loads it only for .ts modules), " +
      "or compile your app to JavaScript and give the worker the .js files",
      { cause },
    );
    error.name = "ConfigError";
    throw error;
  }
  api.register();
}
