// The file BullMQ's worker threads load (plain JS): on Node those threads do not get tsx's hooks
// from the parent's `--import tsx`, so register them before importing the TypeScript processor.
if (typeof Bun === "undefined" && typeof Deno === "undefined") (await import("tsx/esm/api")).register();
const { default: run } = await import("./bullmq_processor.ts");
export default run;
