/**
 * dray/extend: the extension points, for code that builds on dray rather than using it: brokers and
 * their interface, result and cron stores, the supervisor, executors, and the built-in middleware
 * one by one. App code needs none of it (`dray`).
 */
import "./runtime/supported.mjs";
export { registry } from "./actor.ts";
export { crons } from "./cron/cron.ts";
export type { CronRunStep, CronStore, CronWrite } from "./cron/store.ts";
export { cronStoreFor } from "./cron/stores.ts";
export { setBroker, useBroker } from "./client.ts";
export { RedisBroker } from "./broker/redis.ts";
export type { RedisBrokerOptions } from "./broker/redis.ts";
export { MemoryBroker } from "./broker/memory.ts";
export type { Acked, ActorMeta, Broker, Control, DeadLetter, LimitRule, QueueStats, RateLimits, RetryOptions, SendRequest } from "./broker/types.ts";
export type { JobStore, WaitResult } from "./results/types.ts";
export type { DeliveryRef, PipeStep } from "./message.ts";
export type { Passage } from "./middleware.ts";
export { defaultMiddleware, Supervisor } from "./supervisor.ts";
export type { SupervisorOptions } from "./supervisor.ts";
export { ageLimit } from "./middleware/age_limit.ts";
export { backoff, retries } from "./middleware/retries.ts";
export { rateLimiter, rateLimits } from "./middleware/rate_limit.ts";
export type { RateLimiterOptions } from "./middleware/rate_limit.ts";
export { pipelines } from "./middleware/pipelines.ts";
export { resultLimit } from "./middleware/result_limit.ts";
export type { Executor, JobOutcome, JobRequest } from "./executor/types.ts";
export { InlineExecutor } from "./executor/inline.ts";
export { ThreadExecutor } from "./executor/threads.ts";
export type { PoolOptions } from "./executor/threads.ts";
export { ProcessExecutor } from "./executor/processes.ts";
export { createExecutor, defaultIsolation } from "./executor/mod.ts";
export type { ExecutorChoice, Isolation } from "./executor/mod.ts";
