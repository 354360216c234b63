import type { Actor } from "./actor.ts";
import type { SerializedError } from "./errors.ts";
import type { JobOutcome } from "./executor/types.ts";
import type { Delivery, Message } from "./message.ts";

/** What the supervisor does with a delivery once it is decided. */
export type Decision =
  | { kind: "ack" }
  | { kind: "retry"; delay: number }
  | { kind: "deadLetter"; error: SerializedError }
  /** Back to the queue, no attempt charged (interrupted, or skipped by middleware for later). */
  | { kind: "giveBack" };

export interface ProcessInfo {
  delivery: Delivery;
  actor: Actor;
}

/**
 * A feature around the core path. Hooks may be async; `after*` hooks run in reverse order, so the
 * first middleware wraps all the others (as in Dramatiq).
 */
export interface Middleware {
  readonly name: string;
  /** Before a message is sent. Throw to refuse it. */
  beforeEnqueue?(message: Message): void | Promise<void>;
  afterEnqueue?(message: Message): void | Promise<void>;
  /** Before a job runs. Return a decision to settle it without running (skip, dead-letter, delay). */
  beforeProcess?(info: ProcessInfo): Decision | void | Promise<Decision | void>;
  /** After a job ran; may replace the decision the earlier (inner) middleware reached. */
  afterProcess?(info: ProcessInfo, outcome: JobOutcome, decision: Decision): Decision | void | Promise<Decision | void>;
}

/** The decision before any middleware has a say: success acks, interruption gives back, errors die. */
export function baseDecision(outcome: JobOutcome): Decision {
  switch (outcome.status) {
    case "ok":
      return { kind: "ack" };
    case "interrupted":
      return { kind: "giveBack" };
    case "error":
      return { kind: "deadLetter", error: outcome.error };
  }
}

export async function runBeforeProcess(stack: readonly Middleware[], info: ProcessInfo): Promise<Decision | undefined> {
  for (const m of stack) {
    const d = await m.beforeProcess?.(info);
    if (d) return d;
  }
  return undefined;
}

export async function runAfterProcess(stack: readonly Middleware[], info: ProcessInfo, outcome: JobOutcome): Promise<Decision> {
  let decision = baseDecision(outcome);
  for (let i = stack.length - 1; i >= 0; i--) {
    const d = await stack[i]!.afterProcess?.(info, outcome, decision);
    if (d) decision = d;
  }
  return decision;
}
