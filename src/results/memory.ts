import { liveRecord } from "./record.ts";
import { FINISHED, type AbortResult, type JobRecord, type JobStore, type WaitResult } from "./types.ts";
import { Waiters } from "./waiters.ts";

/**
 * Job records in memory, for the MemoryBroker: the same rules as the Redis store (records kept
 * `resultTtl`, "running" while a worker holds the job, aborts that reach the worker holding the job),
 * minus the network. The broker writes through the methods below the interface's.
 */
export class MemoryJobStore implements JobStore {
  readonly #records = new Map<string, { record: JobRecord; expiresAt: number }>();
  readonly #running = new Map<string, number>();
  readonly #aborted = new Map<string, Set<string>>();
  readonly #watchers = new Set<{ queues: Set<string>; onAbort: (id: string) => void }>();
  readonly #waiters = new Waiters((queue, id) => this.get(queue, id));

  async get(queue: string, id: string): Promise<JobRecord | undefined> {
    const key = keyOf(queue, id);
    const entry = this.#records.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.#records.delete(key);
      return undefined;
    }
    return liveRecord(structuredClone(entry.record), this.#running.get(key));
  }

  wait(queue: string, id: string, timeoutMs?: number): Promise<WaitResult> {
    return this.#waiters.wait(queue, id, timeoutMs);
  }

  async abort(queue: string, id: string): Promise<AbortResult | undefined> {
    const key = keyOf(queue, id);
    const record = (await this.get(queue, id)) && this.#records.get(key)!.record;
    if (!record) return undefined;
    const before = record.status;
    if (FINISHED.has(before)) return { aborted: false, status: before, message: `job "${id}" already ${before}: nothing to abort` };
    const set = this.#aborted.get(queue) ?? new Set();
    set.add(id);
    this.#aborted.set(queue, set);
    for (const w of this.#watchers) if (w.queues.has(queue)) w.onAbort(id);
    if (this.#running.has(key)) {
      return { aborted: true, status: "running", message: `job "${id}" is running: its worker was told to stop it` };
    }
    Object.assign(record, { status: "aborted", finishedAt: Date.now(), error: { name: "JobAborted", message: "aborted before it ran" } });
    this.#waiters.changed(queue, [id]);
    return { aborted: true, status: before, message: `job "${id}" was ${before}: it will not run` };
  }

  async locate(id: string): Promise<string | undefined> {
    for (const key of this.#records.keys()) {
      const [queue, jobId] = key.split("\u0000") as [string, string];
      if (jobId === id && (await this.get(queue, id))) return queue;
    }
    return undefined;
  }

  async watchAborts(queues: string[], onAbort: (id: string) => void): Promise<() => Promise<void>> {
    const watcher = { queues: new Set(queues), onAbort };
    this.#watchers.add(watcher);
    for (const q of queues) for (const id of this.#aborted.get(q) ?? []) onAbort(id);
    return async () => void this.#watchers.delete(watcher);
  }

  // ---- written by the MemoryBroker ----

  /** A pending record (queued, delayed): kept until the job settles. */
  put(record: JobRecord): void {
    this.#records.set(keyOf(record.queue, record.id), { record: structuredClone(record), expiresAt: Infinity });
  }

  markRunning(queue: string, id: string): void {
    this.#running.set(keyOf(queue, id), Date.now());
  }

  /** When the job's run started (ms), while a worker holds it. */
  runningSince(queue: string, id: string): number | undefined {
    return this.#running.get(keyOf(queue, id));
  }

  notRunning(queue: string, id: string): void {
    this.#running.delete(keyOf(queue, id));
  }

  /** The job settled for good: keep `record` for `keepMs` (or drop the pending one), tell waiters. */
  finish(queue: string, id: string, record: JobRecord | undefined, keepMs: number): void {
    const key = keyOf(queue, id);
    this.#running.delete(key);
    if (record && keepMs > 0) this.#records.set(key, { record: structuredClone(record), expiresAt: Date.now() + keepMs });
    else this.#records.delete(key);
    if (!record || FINISHED.has(record.status)) this.#aborted.get(queue)?.delete(id);
    this.#waiters.changed(queue, [id]);
  }
}

function keyOf(queue: string, id: string): string {
  return `${queue}\u0000${id}`;
}
