/**
 * dray: actors for background jobs on Redis Streams. The entry for app code: define actors and
 * crons, send jobs, read their results, configure, run a worker. Users' unit tests import
 * `dray/testing`; brokers, executors and stores for those who extend dray are in `dray/extend`.
 */
import "./runtime/supported.mjs";
export { actor } from "./actor.ts";
export type { Actor, ActorOptions, ActorOptionsInput, Handler, JobContext, MessageSpec, PayloadSchema, RateLimitOptions, SendOptions } from "./actor.ts";
export { sendTask } from "./send_task.ts";
export { cron } from "./cron/cron.ts";
export type { CatchUp, CronJob, CronOptions, CronOptionsInput } from "./cron/cron.ts";
export type { CronRun, CronRunStatus } from "./cron/history.ts";
export { getJob, JobHandle } from "./job.ts";
export type { ResultOptions } from "./job.ts";
export type { AbortResult, JobRecord, JobStatus } from "./results/types.ts";
export { group, GroupHandle } from "./group.ts";
export type { Group } from "./group.ts";
export { pipeline, PipelineHandle } from "./pipeline.ts";
export type { Pipeline } from "./pipeline.ts";
export { configure } from "./config.ts";
export type { Settings, TlsSettings } from "./config.ts";
export type { ReplicaAcks } from "./config.ts";
export { closeBroker } from "./client.ts";
export {
  actorHistory, browseQueue, cronRuns, getWorkers, inspectJob, jobsPerMinute, listCrons, liveOverview, pauseQueue, purgeDead, queueOverview, requeueDead, resumeQueue,
} from "./operations.ts";
export type { ActorStats, BrowsedJob, CronOverview, JobDetail, JobState, Page, QueueOverview, ThroughputPoint, WorkerInfo } from "./operations.ts";
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
  ReplicationTimeout,
  ResultTooLarge,
  Retry,
  TimeLimitExceeded,
  TimeoutError,
  UnknownActorError,
  UnknownJobError,
  UsageError,
  WorkerCrashed,
} from "./errors.ts";
export type { SerializedError } from "./errors.ts";
export type { Delivery, Message } from "./message.ts";
export type { Decision, Middleware, ProcessInfo } from "./middleware.ts";
export type { SenderMiddleware } from "./config.ts";
export { defaultMiddleware } from "./supervisor.ts";
export type { StopReport } from "./supervisor.ts";
export type { WorkerEventMap } from "./events.ts";
export { startWorker } from "./worker.ts";
export type { RunningWorker, WorkerOptions } from "./worker.ts";
export type { Isolation } from "./executor/mod.ts";
