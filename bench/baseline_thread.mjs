// Entry of the thread-hop loop's thread: Node 20 threads need tsx's hooks before a `.ts` import.
import { enableTypeScriptImports } from "../src/runtime/typescript.mjs";

await enableTypeScriptImports();
await import("./baseline_thread.ts");
