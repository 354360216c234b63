import { buildMessage, enqueueMessages, registry, type MessageSpec, type SendOptions } from "./actor.ts";
import type { Broker } from "./broker/types.ts";
import { ConfigError, GroupMemberFailed, TimeoutError } from "./errors.ts";
import { JobHandle, type ResultOptions } from "./job.ts";
import type { AbortResult, JobStatus } from "./results/types.ts";

export interface Group {
  readonly messages: readonly MessageSpec[];
  /** Sends every member in one round trip. */
  send(options?: Omit<SendOptions, "jobId">): Promise<GroupHandle>;
}

/**
 * Jobs sent together and awaited together (Dramatiq's `group`): they run in parallel on whatever
 * workers are free, and `results()` resolves once all completed, in the order given.
 */
export function group(messages: readonly MessageSpec[]): Group {
  if (messages.length === 0) throw new ConfigError("a group needs at least one message");
  return {
    messages,
    async send(options = {}) {
      for (const spec of messages) registry.get(spec.actor)?.validate(spec.payload);
      // Each member names its group, so that a job page shows what the job belongs to.
      const groupId = crypto.randomUUID();
      const built = messages.map((spec) => ({
        ...buildMessage(spec.actor, spec.queue, spec.priority, spec.payload, {}), group: { id: groupId, size: messages.length },
      }));
      // Members share the group's delay (or their own, when they were built with one).
      const jobs: JobHandle[] = [];
      for (const [n, message] of built.entries()) {
        const own = messages[n]!.options;
        if (own.delay === undefined && own.at === undefined) continue;
        jobs[n] = (await enqueueMessages([message], own))[0]!;
      }
      const rest = built.filter((_, n) => !jobs[n]);
      const sent = rest.length > 0 ? await enqueueMessages(rest, options) : [];
      let next = 0;
      return new GroupHandle(built.map((_, n) => jobs[n] ?? sent[next++]!));
    },
  };
}

export class GroupHandle {
  constructor(readonly jobs: readonly JobHandle[]) {}

  /** Member ids, in order: enough to rebuild the handle elsewhere with `GroupHandle.of(ids)`. */
  get ids(): string[] {
    return this.jobs.map((j) => j.id);
  }

  static of(ids: readonly string[], options: { queue?: string; broker?: Broker } = {}): GroupHandle {
    return new GroupHandle(ids.map((id) => new JobHandle(id, options.queue, undefined, false, options.broker)));
  }

  /**
   * Every member's return value, in order, once all completed. Rejects as soon as one member failed
   * (GroupMemberFailed names it; `cause` is its error), or with the TimeoutError of a member still
   * pending after `timeout` ms.
   */
  async results<R = unknown>(options: ResultOptions = {}): Promise<R[]> {
    const deadline = options.timeout !== undefined ? Date.now() + options.timeout : undefined;
    const values = this.jobs.map((job, index) => job.result<R>(deadline !== undefined ? { timeout: Math.max(0, deadline - Date.now()) } : {})
      .catch((error: unknown) => {
        if (error instanceof TimeoutError) throw error;
        throw new GroupMemberFailed(index, job.id, job.actor ?? "?", error as Error);
      }));
    for (const v of values) v.catch(() => undefined); // once one rejects, the others no longer matter
    return await Promise.all(values);
  }

  /** Each member's status, in order. */
  async statuses(): Promise<JobStatus[]> {
    return await Promise.all(this.jobs.map((j) => j.status()));
  }

  /** Aborts every member that has not finished. */
  async abort(): Promise<AbortResult[]> {
    return await Promise.all(this.jobs.map((j) => j.abort()));
  }
}
