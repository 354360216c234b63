import type { SerializedError } from "./errors.ts";

/**
 * Events a supervisor emits, for tests, metrics and the bench. Names are `noun:verb`. An outcome
 * (job:complete, job:retry, job:dead, job:discarded, job:returned) is emitted once its settle landed
 * in the broker, so each is emitted once per outcome: a settle that finds the job's lease lost emits
 * nothing (the worker holding the job now emits its own).
 */
export interface WorkerEventMap {
  /**
   * A job was handed to the executor. `enqueuedAt`: when it last became ready in its queue (sent,
   * due after a delay or a retry's backoff, given back), ms since epoch by the broker's clock: the
   * time its stream entry id begins with, or the message's `sentAt` where entry ids are not times.
   */
  "job:start": { id: string; actor: string; queue: string; attempt: number; enqueuedAt: number };
  /** A job finished and was acked. */
  "job:complete": { id: string; actor: string; queue: string; attempt: number; duration: number; value: unknown };
  /** A job failed and will run again after `delay` ms. */
  "job:retry": { id: string; actor: string; queue: string; attempt: number; delay: number; error: SerializedError };
  /** A job (or an undecodable entry) went to the dead-letter queue. */
  "job:dead": { id: string; actor: string; queue: string; attempt: number; error: SerializedError };
  /**
   * A job was removed without success and without a dead letter: aborted, failed (result refused), or
   * skipped without running (a cron tick under its overlap lock); `error` says why.
   */
  "job:discarded": { id: string; actor: string; queue: string; attempt: number; status: "failed" | "aborted" | "skipped"; error: SerializedError };
  /** A job went back to its queue without being charged an attempt. */
  "job:returned": { id: string; actor: string; queue: string; reason: string };
  /** Reading from or writing to Redis failed; the supervisor backs off and tries again. */
  "broker:error": { error: unknown };
  /** The supervisor stopped reading and every job settled. */
  "worker:stopped": Record<string, never>;
}

type Listener<T> = (event: T) => void;

/** A tiny typed emitter: listeners are called synchronously and must not throw. */
export class Events<M extends object> {
  readonly #listeners = new Map<keyof M, Set<Listener<never>>>();

  on<K extends keyof M>(name: K, listener: Listener<M[K]>): () => void {
    const set = this.#listeners.get(name) ?? new Set();
    set.add(listener as Listener<never>);
    this.#listeners.set(name, set);
    return () => set.delete(listener as Listener<never>);
  }

  has(name: keyof M): boolean {
    return (this.#listeners.get(name)?.size ?? 0) > 0;
  }

  emit<K extends keyof M>(name: K, event: M[K]): void {
    const set = this.#listeners.get(name);
    if (!set) return;
    for (const l of set) (l as Listener<M[K]>)(event);
  }
}
