/**
 * dray/testing: for users' own unit tests. Route sends to an in-memory broker and run what was
 * queued to completion in this process, as Dramatiq's `StubBroker` and `broker.join()` do.
 */
import "./runtime/supported.mjs";
export { MemoryBroker } from "./broker/memory.ts";
export { setBroker } from "./client.ts";
export { drain } from "./drain.ts";
export { cronStoreFor } from "./cron/stores.ts";
export type { DrainOptions } from "./drain.ts";
