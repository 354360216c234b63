import type { Logger } from "pino";
import { JobAborted, serializeError, TimeLimitExceeded, WorkerCrashed, type SerializedError } from "../errors.ts";
import { DeadlineList, type Timed } from "./deadline_list.ts";
import type { JobOutcome, JobRequest, PoolHooks } from "./types.ts";

/** Why a job's signal is aborted. */
export type StopReason = "timeLimit" | "abort";

/** One job between `run()` and its outcome, as the supervisor side sees it. */
export interface RunningJob extends Timed {
  /** Unique positive int32, so it fits shared memory; a reused slot never matches an old job. */
  readonly seq: number;
  /** Index into per-slot shared state; at most `capacity` jobs hold one. */
  readonly slot: number;
  readonly job: JobRequest;
  /** The thread id or pid running it, once the host reported the start. */
  host: number | undefined;
  startedAt: number;
  stop: StopReason | undefined;
  stopDetail: string;
  /** The grace timer once its signal fired (its time limit is kept by the book's DeadlineList). */
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The host's last sign of life the control saw for this job (its own use). */
  beat: number;
  settled: boolean;
  resolve: (outcome: JobOutcome) => void;
}

/** What the book needs from an executor to stop jobs on its hosts (threads or processes). */
export interface HostControl {
  /** "thread" or "process", for errors and log lines. */
  readonly kind: string;
  /** Aborts the job's `ctx.signal` on its host; a cooperative handler stops by itself. */
  signal(entry: RunningJob, why: StopReason): void;
  /** Stops the host for good (terminate, SIGKILL); the executor replaces it. */
  kill(host: number): void;
  /** The job is done with (ended, given up on): its slot is free for another job. */
  release?(entry: RunningJob): void;
  /** Ask the host not to start this job, which it holds but has not started (aborted meanwhile). */
  cancel?(entry: RunningJob): void;
  /**
   * At a job's overrun: the job whose synchronous code holds the host, when the host has shown no
   * sign of life since the last look. Undefined when the host is responsive (the job ignores its
   * signal) or the blocker is unknown: then the overrunning job itself is to blame.
   */
  blocker?(entry: RunningJob): RunningJob | undefined;
  /**
   * At a job's limit (or abort): true when the job itself still holds its host in the synchronous
   * code it began with. It cannot see its signal then, so the grace would only keep the host, and
   * every job waiting in it, blocked: the host is stopped at once.
   */
  holdsHost?(entry: RunningJob): boolean;
  /** The job's host showed a sign of life since its stop signal: the job could see it and stop. */
  sawStop?(entry: RunningJob): boolean;
}

export interface JobBookOptions {
  capacity: number;
  control: HostControl;
  logger: Logger;
  /** After the signal aborts, how long the handler has to settle before its host is stopped. @default 100 */
  graceMs?: number | undefined;
  hooks?: PoolHooks | undefined;
}

const maxSeq = 0x7fff_ffff;
/** How long a {@link JobBook.heldHosts} answer is reused, ms. */
const heldForMs = 5;

/**
 * The running jobs of a thread or process executor: a slot per job, the host that runs it, its
 * deadline, and its outcome when its host stops. Deadlines count from the host's start report, so
 * time spent waiting for a free host is never charged to the job. At the time limit the job's signal
 * aborts; after a grace (none when the job holds its host, so cannot see the signal) the host is
 * stopped, the job fails with TimeLimitExceeded, and the other jobs on that host are interrupted
 * (given back without being charged an attempt), except those past their own limit that could see
 * their signal and ignored it: they fail too.
 */
export class JobBook {
  readonly #jobs = new Map<number, RunningJob>();
  /** The last {@link heldHosts} answer and when (performance.now()) it was made. */
  #held: { at: number; hosts: Set<number> } | undefined;
  readonly #free: number[];
  readonly #waiting: Array<{ begin: (slot: number) => void; resolve: (o: JobOutcome) => void }> = [];
  /** Hosts this book stopped: their last reports and task failures are not crashes. */
  readonly #stopped = new Set<number>();
  readonly #o: Required<Omit<JobBookOptions, "hooks">>;
  readonly #hooks: PoolHooks;
  readonly #deadlines = new DeadlineList<RunningJob>((entry) => this.#stop(entry, "timeLimit"));
  #seq = 0;
  #closed = false;

  constructor(options: JobBookOptions) {
    this.#o = { ...options, graceMs: options.graceMs ?? 100 };
    this.#hooks = options.hooks ?? {};
    this.#free = Array.from({ length: options.capacity }, (_, i) => options.capacity - 1 - i);
  }

  get running(): number {
    return this.#jobs.size;
  }

  /** Runs `job` once a slot is free; `dispatch` hands it to a host. Never rejects. */
  run(job: JobRequest, dispatch: (entry: RunningJob) => void): Promise<JobOutcome> {
    if (this.#closed) return Promise.resolve(interrupted("the executor is closed"));
    return new Promise<JobOutcome>((resolve) => {
      const begin = (slot: number) => {
        this.#seq = (this.#seq % maxSeq) + 1;
        const entry: RunningJob = {
          seq: this.#seq, slot, job, host: undefined, startedAt: performance.now(), stop: undefined,
          stopDetail: "", timer: undefined, beat: 0, settled: false, resolve,
          deadline: 0, limit: 0, prev: undefined, next: undefined, listed: false,
        };
        this.#jobs.set(entry.seq, entry);
        try {
          dispatch(entry);
        } catch (error) {
          this.#finish(entry, interrupted(`could not dispatch: ${(error as Error).message}`));
        }
      };
      const slot = this.#free.pop();
      if (slot !== undefined) begin(slot);
      else this.#waiting.push({ begin, resolve });
    });
  }

  /** The host reports that the job started: its deadline counts from now. */
  started(seq: number, host: number): void {
    const entry = this.#jobs.get(seq);
    if (!entry || entry.host !== undefined) return;
    entry.host = host;
    entry.startedAt = performance.now();
    if (this.#stopped.has(host)) {
      this.#finish(entry, interrupted(`its ${this.#o.control.kind} ${host} was being stopped`));
      return;
    }
    if (entry.stop) {
      // Aborted while it waited for a host: stop it at once.
      entry.stop = undefined;
      this.#stop(entry, "abort", entry.stopDetail);
      return;
    }
    this.#deadlines.add(entry, entry.job.timeLimit);
  }

  /** The host returned the job's outcome. */
  finish(seq: number, outcome: JobOutcome): void {
    const entry = this.#jobs.get(seq);
    if (!entry) return;
    // A handler that threw after its signal fired was stopped by the limit, whatever it threw.
    if (entry.stop && outcome.status === "error") outcome = stoppedOutcome(entry, "stopped cooperatively", outcome.error);
    this.#finish(entry, outcome);
  }

  entry(seq: number): RunningJob | undefined {
    return this.#jobs.get(seq);
  }

  jobsOn(host: number): RunningJob[] {
    return [...this.#jobs.values()].filter((e) => e.host === host);
  }

  /**
   * Hosts that should be given no new jobs now: one of their jobs is past its limit or aborted (its
   * host may be stopped any moment), or `blocking` says a job holds its host (its synchronous code
   * has run long: what waits there waits for it).
   */
  heldHosts(blocking: (entry: RunningJob) => boolean, now: number): Set<number> {
    // The pools ask at every flush, and an I/O-bound pool flushes about once per finished job: a scan
    // of every running job each time cost it a tenth of its throughput (bench/README.md, "Cost per
    // job"). The answer holds for a few ms (a CPU hold only counts after 50), and a stop signal drops it.
    if (this.#held && now - this.#held.at < heldForMs) return this.#held.hosts;
    const held = new Set<number>();
    for (const e of this.#jobs.values()) {
      if (e.host !== undefined && !held.has(e.host) && (e.stop !== undefined || blocking(e))) held.add(e.host);
    }
    this.#held = { at: now, hosts: held };
    return held;
  }

  wasStopped(host: number): boolean {
    return this.#stopped.has(host);
  }

  /** A process's pid may be reused once it has exited. */
  forget(host: number): void {
    this.#stopped.delete(host);
  }

  abort(jobId: string, reason: string): void {
    for (const entry of this.#jobs.values()) {
      if (entry.job.id !== jobId) continue;
      if (entry.host === undefined) {
        entry.stop = "abort";
        entry.stopDetail = reason;
        this.#o.control.cancel?.(entry);
      } else this.#stop(entry, "abort", reason);
    }
  }

  /**
   * Stops a host on purpose (a job overran, it uses too much memory): its unfinished jobs are
   * interrupted, so they go back to their queue uncharged, and the log says so.
   */
  stopHost(host: number, why: string): void {
    if (this.#stopped.has(host)) return;
    this.#stopped.add(host);
    if (this.#stopped.size > 1_000) this.#stopped.delete(this.#stopped.values().next().value!);
    const { kind } = this.#o.control;
    // One past its own limit (or aborted) whose host was alive after its signal could have stopped
    // and did not: it ends as it would have by itself. Given back, it would run again uncharged, and
    // again behind each hang. One whose signal a neighbour's synchronous code kept from it is not to blame.
    const [overdue, victims] = partition(this.jobsOn(host), (e) => e.stop !== undefined && !!this.#o.control.sawStop?.(e));
    for (const e of overdue) this.#stoppedWithHost(e, `its ${kind} was stopped: ${why}`);
    for (const e of victims) this.#finish(e, interrupted(`its ${kind} ${host} was stopped: ${why}`));
    const ids = (es: RunningJob[]) => es.map((e) => ({ id: e.job.id, actor: e.job.actor }));
    this.#o.logger.warn(
      { [kind]: host, reason: why, interrupted: ids(victims), ...(overdue.length > 0 ? { overdue: ids(overdue) } : {}) },
      victims.length > 0
        ? `stopping ${kind} ${host}: ${why}; its ${victims.length} other running job(s) go back to their queue without being charged an attempt`
        : `stopping ${kind} ${host}: ${why}`,
    );
    this.#o.control.kill(host);
    this.#hooks.hostReplaced?.();
  }

  /**
   * A host died by itself (uncaught error, out of memory, exit in a handler). Which of its jobs caused
   * it is unknown, so each fails with WorkerCrashed and is retried: a poison job then ends in the
   * dead-letter queue instead of killing hosts forever. `only` is a job whose host never reported.
   */
  hostCrashed(host: number | undefined, cause: string, only?: RunningJob): void {
    const { kind } = this.#o.control;
    if (host !== undefined) this.#hooks.hostReplaced?.();
    const victims = host === undefined
      ? (only && !only.settled ? [only] : [])
      : this.jobsOn(host);
    if (victims.length === 0) return;
    const actors = [...new Set(victims.map((e) => e.job.actor))].join(", ");
    for (const e of victims) {
      const error = serializeError(new WorkerCrashed(`the ${kind} running job ${e.job.id} (actor ${e.job.actor}) died: ${cause}`));
      delete error.stack; // it would show this book, not the job
      this.#finish(e, { status: "error", error, final: false, duration: performance.now() - e.startedAt });
    }
    this.#o.logger.error(
      { [kind]: host, cause, jobs: victims.map((e) => ({ id: e.job.id, actor: e.job.actor })) },
      `${kind}${host === undefined ? "" : ` ${host}`} died while running ${actors} (${cause}); its jobs will be retried`,
    );
  }

  /** Resolves when no job runs, or after `ms`. */
  async idle(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.#jobs.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  /** Closing: every job still running or waiting is interrupted, so the supervisor gives it back. */
  interruptAll(reason: string): void {
    this.#closed = true;
    for (const w of this.#waiting.splice(0)) w.resolve(interrupted(reason));
    for (const entry of [...this.#jobs.values()]) this.#finish(entry, interrupted(reason));
  }

  #stop(entry: RunningJob, why: StopReason, detail = ""): void {
    if (entry.settled || entry.stop) return;
    this.#deadlines.remove(entry);
    entry.stop = why;
    this.#held = undefined;
    entry.stopDetail = detail;
    this.#o.control.signal(entry, why);
    if (this.#o.control.holdsHost?.(entry)) return this.#overrun(entry, true);
    entry.timer = setTimeout(() => this.#overrun(entry), this.#o.graceMs);
  }

  /** `holding`: the job itself is known to hold its host, no need to look for another blocker. */
  #overrun(entry: RunningJob, holding = false): void {
    if (entry.settled || entry.host === undefined) return;
    const { kind } = this.#o.control;
    const blocker = holding ? entry : this.#o.control.blocker?.(entry);
    if (blocker && blocker !== entry) {
      // Its host is stuck in another job's synchronous code, so this job cannot even see its signal.
      // The blocker's own deadline decides (stopping the host interrupts this job, uncharged); if the
      // blocker finishes first, this job gets its signal and a short while to settle.
      entry.timer = setTimeout(() => this.#overrun(entry), 50);
      return;
    }
    this.#stoppedWithHost(entry, `its ${kind} was stopped`);
    const what = entry.stop === "timeLimit" ? "overran its time limit" : `was aborted (${entry.stopDetail})`;
    this.stopHost(entry.host, `job ${entry.job.id} (actor ${entry.job.actor}) ${what} and ignored its signal`);
  }

  /** The job was stopped with its host after its signal: TimeLimitExceeded (or JobAborted). */
  #stoppedWithHost(entry: RunningJob, detail: string): void {
    if (entry.settled) return;
    this.#finish(entry, stoppedOutcome(entry, detail));
    if (entry.stop === "timeLimit") this.#hooks.timeLimitKill?.(entry.job);
  }

  #finish(entry: RunningJob, outcome: JobOutcome): void {
    if (entry.settled) return;
    entry.settled = true;
    clearTimeout(entry.timer);
    this.#deadlines.remove(entry);
    this.#jobs.delete(entry.seq);
    this.#o.control.release?.(entry);
    const next = this.#waiting.shift();
    if (next) next.begin(entry.slot);
    else this.#free.push(entry.slot);
    entry.resolve(outcome);
  }
}

function partition<T>(items: T[], test: (item: T) => boolean): [T[], T[]] {
  const yes: T[] = [];
  const no: T[] = [];
  for (const item of items) (test(item) ? yes : no).push(item);
  return [yes, no];
}

export function interrupted(reason: string): JobOutcome {
  return { status: "interrupted", reason };
}

function stoppedOutcome(entry: RunningJob, detail: string, cause?: SerializedError): JobOutcome {
  const aborted = entry.stop === "abort";
  const error = aborted
    ? new JobAborted(`${entry.stopDetail || "job aborted"} (${detail})`)
    : new TimeLimitExceeded(entry.job.timeLimit, detail);
  const data = serializeError(error);
  // The stack would show this book, not the handler.
  delete data.stack;
  if (cause) data.cause = cause;
  // An aborted job is not retried; one that ran out of time is, like any failure.
  return { status: "error", error: data, final: aborted, duration: performance.now() - entry.startedAt };
}
