import type { Actor } from "./actor.ts";
import type { Broker } from "./broker/types.ts";
import type { SerializedError } from "./errors.ts";
import type { JobOutcome } from "./executor/types.ts";
import type { SenderMiddleware } from "./config.ts";
import type { Delivery } from "./message.ts";

/** What the supervisor does with a delivery once it is decided. */
export type Decision =
  | { kind: "ack" }
  | { kind: "retry"; delay: number }
  | { kind: "deadLetter"; error: SerializedError }
  /** Back to the queue, no attempt charged (interrupted, or skipped by middleware for later). */
  | { kind: "giveBack" }
  /** Back to the delayed set for `delay` ms, no attempt charged (e.g. over a rate limit). */
  | { kind: "defer"; delay: number }
  /**
   * Removed for good without success, neither retried nor dead-lettered: recorded as `failed` (e.g.
   * a result over the size cap), `aborted`, or `skipped` (not run on purpose, e.g. a cron tick under
   * its overlap lock), with the error.
   */
  | { kind: "discard"; status: "failed" | "aborted" | "skipped"; error: SerializedError };

export interface ProcessInfo {
  delivery: Delivery;
  actor: Actor;
  /** The worker's broker (to send follow-up jobs, take rate-limit slots). */
  broker: Broker;
  /**
   * What the handler sees as `ctx.meta`: starts as a copy of the message's `meta`; `beforeProcess`
   * hooks may add to it. JSON only: it crosses into the thread or process that runs the job.
   */
  meta: Record<string, unknown>;
}

/**
 * A feature around the core path. Hooks may be async; `after*` hooks run in reverse order, so the
 * first middleware wraps all the others (as in Dramatiq).
 */
export interface Middleware extends SenderMiddleware {
  /** Before a job runs. Return a decision to settle it without running (skip, dead-letter, defer, discard). */
  beforeProcess?(info: ProcessInfo): Decision | void | Promise<Decision | void>;
  /** After a job ran; may replace the decision the earlier (inner) middleware reached. */
  afterProcess?(info: ProcessInfo, outcome: JobOutcome, decision: Decision): Decision | void | Promise<Decision | void>;
  /**
   * The counterpart of a `beforeProcess` that ran and passed, when this `afterProcess` will not run:
   * a later middleware's `beforeProcess` decided (`decision`), a hook threw (`giveBack`), or the run's
   * outcome was discarded because this worker lost the job's lease (`undefined`: another worker holds
   * the job now, so shared state keyed by the job id, such as a cron lock, is the new holder's). Runs
   * in reverse order, like `afterProcess`; what it throws is logged, never fails the job. Release here
   * what `beforeProcess` took (Dramatiq's `after_skip_message`).
   */
  afterSkip?(info: ProcessInfo, decision: Decision | undefined): void | Promise<void>;
}

/**
 * How far a job got through the stack: middleware `[0, open)` ran `beforeProcess` (or have none) and
 * are owed their after-hook. The supervisor gives those `afterSkip` when the job ends another way.
 */
export interface Passage {
  open: number;
}

/** The decision before any middleware has a say: success acks, interruption gives back, errors die. */
export function baseDecision(outcome: JobOutcome): Decision {
  switch (outcome.status) {
    case "ok":
      return { kind: "ack" };
    case "interrupted":
      return { kind: "giveBack" };
    case "error":
      // An aborted job is over: neither retried nor a dead letter to requeue.
      if (outcome.error.name === "JobAborted") return { kind: "discard", status: "aborted", error: outcome.error };
      return { kind: "deadLetter", error: outcome.error };
  }
}

/**
 * Runs the before-hooks in order; the first decision wins. Only middleware that has the hook is
 * called, and only a promise is awaited: on the hot path most hooks answer synchronously.
 * `passage.open` counts the middleware that passed (see {@link Passage}).
 */
export function runBeforeProcess(stack: readonly Middleware[], info: ProcessInfo, passage: Passage = { open: 0 },
  from = 0): Decision | undefined | Promise<Decision | undefined> {
  for (let i = from; i < stack.length; i++) {
    passage.open = i;
    const hook = stack[i]!.beforeProcess;
    if (!hook) continue;
    const d = hook.call(stack[i], info);
    if (isPromise(d)) {
      return d.then((d) => {
        if (d) return d;
        return runBeforeProcess(stack, info, passage, i + 1);
      });
    }
    if (d) return d;
  }
  passage.open = stack.length;
  return undefined;
}

/**
 * Runs the after-hooks in reverse order, each seeing the decision reached so far. Before hook `i`
 * runs, `passage.open` is `i`: should it throw, middleware `[0, i)` are still owed their after-hook.
 */
export function runAfterProcess(stack: readonly Middleware[], info: ProcessInfo, outcome: JobOutcome,
  decision: Decision = baseDecision(outcome), passage: Passage = { open: stack.length }): Decision | Promise<Decision> {
  for (let i = Math.min(passage.open, stack.length) - 1; i >= 0; i--) {
    passage.open = i;
    const hook = stack[i]!.afterProcess;
    if (!hook) continue;
    const d = hook.call(stack[i], info, outcome, decision);
    if (isPromise(d)) return d.then((d) => runAfterProcess(stack, info, outcome, d ?? decision, passage));
    if (d) decision = d;
  }
  passage.open = 0;
  return decision;
}

/**
 * Gives middleware `[0, passage.open)` their `afterSkip`, in reverse order, and closes the passage.
 * Never rejects: a failing hook is reported to `onError` and the others still run.
 */
export async function runAfterSkip(stack: readonly Middleware[], info: ProcessInfo, passage: Passage,
  decision: Decision | undefined, onError: (error: unknown, middleware: string) => void): Promise<void> {
  const open = Math.min(passage.open, stack.length);
  passage.open = 0;
  for (let i = open - 1; i >= 0; i--) {
    const m = stack[i]!;
    if (!m.afterSkip) continue;
    try {
      await m.afterSkip(info, decision);
    } catch (error) {
      onError(error, m.name);
    }
  }
}

export function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === "function";
}
