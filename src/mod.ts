/**
 * dray: actors for background jobs on Redis Streams. The one public entry.
 */
export { actor, registry } from "./actor.ts";
export type { Actor, ActorOptions, ActorOptionsInput, Handler, JobContext, MessageSpec, PayloadSchema, RateLimitOptions, SendOptions } from "./actor.ts";
export { sendTask } from "./send_task.ts";
export { cron, crons } from "./cron/cron.ts";
export type { CatchUp, CronJob, CronOptions, CronOptionsInput } from "./cron/cron.ts";
export type { CronRun, CronRunStatus } from "./cron/history.ts";
export type { CronRunStep, CronStore, CronWrite } from "./cron/store.ts";
export { getJob, JobHandle } from "./job.ts";
export type { ResultOptions } from "./job.ts";
export type { AbortResult, JobRecord, JobStatus } from "./results/types.ts";
export { group, GroupHandle } from "./group.ts";
export type { Group } from "./group.ts";
export { pipeline, PipelineHandle } from "./pipeline.ts";
export type { Pipeline } from "./pipeline.ts";
export { configure } from "./config.ts";
export type { Settings } from "./config.ts";
export { closeBroker, setBroker, useBroker } from "./client.ts";
export {
  BrokerError,
  ConfigError,
  DrayError,
  GroupMemberFailed,
  JobAborted,
  MalformedMessageError,
  MaxAgeExceeded,
  PayloadValidationError,
  PipelineStepFailed,
  RemoteError,
  ResultTooLarge,
  Retry,
  TimeLimitExceeded,
  TimeoutError,
  UnknownActorError,
  UnknownJobError,
  WorkerCrashed,
} from "./errors.ts";
export type { SerializedError } from "./errors.ts";
export { RedisBroker } from "./broker/redis.ts";
export type { RedisBrokerOptions } from "./broker/redis.ts";
export { MemoryBroker } from "./broker/memory.ts";
export type { Acked, ActorMeta, Broker, DeadLetter, LimitRule, QueueStats, RateLimits, RetryOptions, SendRequest } from "./broker/types.ts";
export type { JobStore, WaitResult } from "./results/types.ts";
export type { Delivery, DeliveryRef, Message, PipeStep } from "./message.ts";
export { defaultMiddleware, Supervisor } from "./supervisor.ts";
export type { StopReport, SupervisorOptions } from "./supervisor.ts";
export type { WorkerEventMap } from "./events.ts";
export type { Decision, Middleware, ProcessInfo } from "./middleware.ts";
export { ageLimit } from "./middleware/age_limit.ts";
export { backoff, retries } from "./middleware/retries.ts";
export { rateLimiter, rateLimits } from "./middleware/rate_limit.ts";
export type { RateLimiterOptions } from "./middleware/rate_limit.ts";
export { pipelines } from "./middleware/pipelines.ts";
export { resultLimit } from "./middleware/result_limit.ts";
export { startWorker } from "./worker.ts";
export type { RunningWorker, WorkerOptions } from "./worker.ts";
export type { Executor, JobOutcome, JobRequest } from "./executor/types.ts";
export { InlineExecutor } from "./executor/inline.ts";
export { ThreadExecutor } from "./executor/threads.ts";
export type { PoolOptions } from "./executor/threads.ts";
export { ProcessExecutor } from "./executor/processes.ts";
export { createExecutor, defaultIsolation } from "./executor/mod.ts";
export type { ExecutorChoice, Isolation } from "./executor/mod.ts";
export { drain } from "./testing.ts";
