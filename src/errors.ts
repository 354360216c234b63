/**
 * Every error dray raises is a class here, so callers can `instanceof` instead of matching strings.
 * Errors that cross a thread or process boundary travel as {@link SerializedError} and are revived
 * by {@link reviveError}; the registry below lets dray's own classes keep their identity.
 */

/** Base of every error dray raises itself. */
export class DrayError extends Error {
  override name = "DrayError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The options given to `actor()` or `send()` are invalid. Raised at definition or call time. */
export class ConfigError extends DrayError {
  override name = "ConfigError";
}

/** The command line of `dray <command>` is wrong (a flag unknown, missing its value, or out of range). */
export class UsageError extends ConfigError {
  override name = "UsageError";
}

/** A payload failed its actor's schema. Never retried: the same payload would fail again. */
export class PayloadValidationError extends DrayError {
  override name = "PayloadValidationError";
  constructor(readonly actor: string, readonly issues: unknown[], options?: { cause?: unknown }) {
    super(`payload for actor "${actor}" failed its schema: ${formatIssues(issues)}`, options);
  }
}

/** No actor of that name is known to this process nor published by any worker. */
export class UnknownActorError extends DrayError {
  override name = "UnknownActorError";
  constructor(readonly actor: string, detail = "") {
    super(`unknown actor "${actor}"${detail ? `: ${detail}` : ""}`);
  }
}

/** A stream entry that is not a dray message (bad JSON, missing fields). Dead-lettered as is. */
export class MalformedMessageError extends DrayError {
  override name = "MalformedMessageError";
}

/**
 * Thrown by a handler to ask for a retry, optionally after `delay` ms. It still counts as an attempt,
 * and is bounded by `maxRetries` like any failure.
 */
export class Retry extends DrayError {
  override name = "Retry";
  readonly delay: number | undefined;
  constructor(options: { delay?: number; message?: string; cause?: unknown } = {}) {
    super(options.message ?? `retry requested${options.delay !== undefined ? ` in ${options.delay} ms` : ""}`, options);
    this.delay = options.delay;
  }
}

/** The job ran past its actor's `timeLimit` and was stopped. */
export class TimeLimitExceeded extends DrayError {
  override name = "TimeLimitExceeded";
  constructor(readonly limit: number, detail = "") {
    super(`time limit of ${limit} ms exceeded${detail ? ` (${detail})` : ""}`);
  }
}

/** The message was older than its actor's `maxAge` when a worker got to it. */
export class MaxAgeExceeded extends DrayError {
  override name = "MaxAgeExceeded";
}

/** The thread or process running the job died under it (crash, out of memory, `process.exit`). */
export class WorkerCrashed extends DrayError {
  override name = "WorkerCrashed";
}

/** No record of this job: never sent, expired after its `resultTtl`, or its actor keeps none (`resultTtl: 0`). */
export class UnknownJobError extends DrayError {
  override name = "UnknownJobError";
  constructor(readonly jobId: string, detail = "") {
    super(`unknown job "${jobId}"${detail ? `: ${detail}` : ""}`);
  }
}

/** Waiting for a job's result took longer than asked; the job itself goes on. */
export class TimeoutError extends DrayError {
  override name = "TimeoutError";
  constructor(readonly jobId: string, readonly status: string, readonly timeout: number) {
    super(`job "${jobId}" is still ${status} after waiting ${timeout} ms`);
  }
}

/** The job was aborted (`job.abort()`): before it ran, or while running. */
export class JobAborted extends DrayError {
  override name = "JobAborted";
}

/** A job's return value was bigger than `maxResultBytes`: refused, and the job recorded as failed. */
export class ResultTooLarge extends DrayError {
  override name = "ResultTooLarge";
}

/** A member of a group failed (dead, failed or aborted); `cause` is its error. */
export class GroupMemberFailed extends DrayError {
  override name = "GroupMemberFailed";
  constructor(readonly index: number, readonly jobId: string, readonly actor: string, cause: Error) {
    super(`group member ${index} (actor "${actor}", job "${jobId}") failed: ${cause.message}`, { cause });
  }
}

/** A pipeline step failed, so the steps after it never ran; `cause` is its error. */
export class PipelineStepFailed extends DrayError {
  override name = "PipelineStepFailed";
  constructor(readonly step: number, readonly jobId: string, readonly actor: string, cause: Error) {
    super(`pipeline step ${step} (actor "${actor}", job "${jobId}") failed: ${cause.message}`, { cause });
  }
}

/** Redis answered with something dray cannot work with, or not at all. */
export class BrokerError extends DrayError {
  override name = "BrokerError";
}

/**
 * A send reached its master but fewer replicas than `replicaAcks` asks acknowledged it in time (one
 * is down, or lagging). The job is queued on the master and will run, unless that master fails
 * before a replica catches up: then it may or may not survive the failover. Sending again may run it
 * twice; a `dedup` id makes that safe.
 */
export class ReplicationTimeout extends BrokerError {
  override name = "ReplicationTimeout";
}

/** An error as data: what crosses thread, process and Redis boundaries. */
export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  cause?: SerializedError;
  /** Own enumerable fields of the original error (e.g. `issues` of a ZodError, `delay` of Retry). */
  fields?: Record<string, unknown>;
}

const engineFields = new Set(["line", "column", "originalLine", "originalColumn", "sourceURL"]);

export function serializeError(error: unknown, depth = 0): SerializedError {
  if (!(error instanceof Error)) {
    return { name: "NonError", message: typeof error === "string" ? error : safeJson(error) };
  }
  const out: SerializedError = { name: error.name, message: error.message };
  if (error.stack) out.stack = error.stack;
  if (error.cause !== undefined && depth < 5) out.cause = serializeError(error.cause, depth + 1);
  const fields: Record<string, unknown> = {};
  for (const key of Object.getOwnPropertyNames(error)) {
    if (key === "name" || key === "message" || key === "stack" || key === "cause") continue;
    // Non-enumerable fields count too (zod 4 hides a ZodError's `issues`), but not engine bookkeeping
    // (Bun's line/column/sourceURL) nor `_`-private internals (a ZodError's `_zod` holds its schema).
    if (!Object.prototype.propertyIsEnumerable.call(error, key) && (key.startsWith("_") || engineFields.has(key))) continue;
    const value = (error as unknown as Record<string, unknown>)[key];
    // Only what survives JSON: fields are for matching and display, not for behaviour.
    try {
      fields[key] = JSON.parse(JSON.stringify(value) ?? "null");
    } catch {
      fields[key] = String(value);
    }
  }
  if (Object.keys(fields).length > 0) out.fields = fields;
  return out;
}

/** An error revived from data. Its `name` is the original's, so `throws` matching by name works. */
export class RemoteError extends DrayError {
  constructor(readonly data: SerializedError) {
    super(data.message, data.cause ? { cause: reviveError(data.cause) } : undefined);
    this.name = data.name;
    if (data.stack) this.stack = data.stack;
    if (data.fields) Object.assign(this, data.fields);
  }
}

export function reviveError(data: SerializedError): Error {
  if (data.name === "Retry") {
    return new Retry({ delay: data.fields?.delay as number | undefined, message: data.message });
  }
  return new RemoteError(data);
}

function formatIssues(issues: unknown[]): string {
  return issues
    .slice(0, 5)
    .map((i) => {
      const issue = i as { path?: unknown[]; message?: string };
      const path = issue.path && issue.path.length > 0 ? issue.path.join(".") : "(root)";
      return `${path}: ${issue.message ?? "invalid"}`;
    })
    .join("; ");
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
