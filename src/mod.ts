/**
 * dray: actors for background jobs on Redis Streams. The one public entry.
 */
export { actor, registry } from "./actor.ts";
export type { Actor, ActorOptions, ActorOptionsInput, Handler, JobContext, PayloadSchema, SendOptions } from "./actor.ts";
export { sendTask } from "./send_task.ts";
export { JobHandle } from "./job.ts";
export { configure } from "./config.ts";
export type { Settings } from "./config.ts";
export { closeBroker, setBroker, useBroker } from "./client.ts";
export {
  BrokerError,
  ConfigError,
  DrayError,
  MalformedMessageError,
  MaxAgeExceeded,
  PayloadValidationError,
  RemoteError,
  Retry,
  RetriesExhausted,
  TimeLimitExceeded,
  UnknownActorError,
  WorkerCrashed,
} from "./errors.ts";
export type { SerializedError } from "./errors.ts";
export { RedisBroker } from "./broker/redis.ts";
export type { RedisBrokerOptions } from "./broker/redis.ts";
export { MemoryBroker } from "./broker/memory.ts";
export type { ActorMeta, Broker, DeadLetter, QueueStats, SendRequest } from "./broker/types.ts";
export type { Delivery, Message } from "./message.ts";
export { Supervisor } from "./supervisor.ts";
export type { SupervisorOptions } from "./supervisor.ts";
export type { WorkerEventMap } from "./events.ts";
export type { Decision, Middleware, ProcessInfo } from "./middleware.ts";
export { ageLimit } from "./middleware/age_limit.ts";
export { backoff, retries } from "./middleware/retries.ts";
export { startWorker } from "./worker.ts";
export type { RunningWorker, WorkerOptions } from "./worker.ts";
export type { Executor, JobOutcome, JobRequest } from "./executor/types.ts";
export { InlineExecutor } from "./executor/inline.ts";
export { drain } from "./testing.ts";
