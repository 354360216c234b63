import { spawn, type ChildProcess } from "node:child_process";
import { portableTls, settings } from "../config.ts";
import { ConfigError, reviveError } from "../errors.ts";
import { childRuntimeArgs, dieWithParent, isTypeScript, onProcessExit, ownFile } from "../runtime/mod.ts";
import { interrupted, JobBook, type RunningJob } from "./deadlines.ts";
import type { ChildCommand, ChildReport } from "./process_protocol.ts";
import { blockedAfterMs, memoryReportMs, type PoolOptions } from "./threads.ts";
import type { Executor, JobOutcome, JobRequest } from "./types.ts";

interface Child {
  proc: ChildProcess;
  pid: number;
  /** Takes jobs. */
  ready: boolean;
  /** Imported the app modules once (a stopped child is not ready, but it did start). */
  started: boolean;
  /** Jobs sent to it, in the order it starts them, and how far each got. */
  jobs: Map<number, "waiting" | "started" | "yielded">;
  /**
   * Its share of the concurrency (see #seatSlots); a replacement takes the seat of the child it
   * replaces. Undefined for a spare: ready, given no jobs until it takes a stopped child's seat.
   */
  seat: number | undefined;
  /** Jobs it runs at once (its init): its seat's share, for a spare the share of the seat it can take. */
  slots: number;
  lastBeat: number;
  /** Why it is about to exit, when it could say. */
  crash?: string;
}

/**
 * Runs handlers in child processes of the worker's own runtime, many per process. SIGKILL stops
 * anything, which threads cannot promise everywhere (Deno leaves a terminated thread spinning), and
 * a process's whole memory goes with it. Same JobBook, same outcomes as the thread executor.
 *
 * Prefetch as in the thread pool: each child holds a seat with its share of the concurrency (the
 * shares add up to it exactly), and may be sent up to its share of the prefetch more. Those wait in
 * the child, which starts one when a job there ends and reports the start.
 *
 * As in the thread pool, a child held by a job past its limit or stuck in its synchronous code gets
 * no new jobs, and `spares` children start ahead and wait without a seat: one takes the seat of a
 * child that is stopped, and a new spare starts in its place.
 */
export class ProcessExecutor implements Executor {
  readonly capacity: number;
  readonly #o: PoolOptions;
  readonly #size: number;
  readonly #prefetch: number;
  readonly #spares: number;
  /** Seat -> pid of the child holding it. */
  readonly #seats: Array<number | undefined>;
  readonly #book: JobBook;
  readonly #children = new Map<number, Child>();
  /** Jobs with a slot but no process with room yet (one is being replaced). */
  #pending: RunningJob[] = [];
  #flushing = false;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #startup: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #closing = false;
  /** stopStarting() was called: no job is sent any more. */
  #draining = false;
  #quickDeaths = 0;
  #unhookExit: (() => void) | undefined;

  constructor(options: PoolOptions) {
    this.#o = options;
    this.#size = Math.max(1, Math.min(options.threads, options.concurrency));
    this.#prefetch = Math.ceil((options.prefetch ?? options.concurrency) / this.#size);
    this.capacity = options.concurrency + this.#prefetch * this.#size;
    this.#seats = Array.from({ length: this.#size }, () => undefined);
    // As many as the thread pool's: with one, the hung-jobs bench took 10.7 s on Deno against 8.9 s
    // with two (bench/README.md, "Hung jobs"); each costs a child's memory (about 65 MB on Deno).
    this.#spares = options.spares ?? Math.min(2, this.#size);
    this.#book = new JobBook({
      capacity: this.capacity,
      logger: options.logger,
      graceMs: options.graceMs,
      hooks: options.hooks,
      control: {
        kind: "process",
        signal: (entry, why) => {
          entry.beat = performance.now();
          this.#send(this.#children.get(entry.host!), { kind: "stop", seq: entry.seq, why });
        },
        blocker: (entry) => this.#blocker(entry),
        // signal() noted when it sent the stop; a beat sent after it means the child read it.
        sawStop: (entry) => (this.#children.get(entry.host!)?.lastBeat ?? 0) > entry.beat,
        holdsHost: (entry) => {
          // Never reached its first await, and its child has been silent since: it cannot see the stop.
          const child = this.#children.get(entry.host!);
          return !!child && this.#blocker(entry, false) === entry && performance.now() - child.lastBeat > 100;
        },
        kill: (pid) => this.#kill(pid),
        cancel: (entry) => {
          for (const c of this.#children.values()) {
            if (c.jobs.get(entry.seq) === "waiting") this.#send(c, { kind: "cancel", seq: entry.seq });
          }
        },
      },
    });
  }

  /** Starts every process and waits until each has imported the app modules. */
  async start(): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => (this.#startup = { resolve, reject }));
    // A child stuck in a handler cannot notice that its worker exited (say, on a second Ctrl-C).
    this.#unhookExit = onProcessExit(() => {
      for (const c of this.#children.values()) c.proc.kill("SIGKILL");
    });
    for (let i = 0; i < this.#size; i++) this.#spawn(i);
    for (let i = 0; i < this.#spares; i++) this.#spawn(undefined);
    const timeout = this.#o.startTimeoutMs ?? 60_000;
    const timer = setTimeout(() => this.#startup?.reject(new ConfigError(`child processes did not start within ${timeout} ms`)), timeout);
    try {
      await ready;
    } catch (error) {
      this.#closing = true;
      this.#unhookExit?.();
      for (const c of this.#children.values()) c.proc.kill("SIGKILL");
      throw error;
    } finally {
      clearTimeout(timer);
      this.#startup = undefined;
    }
    this.#o.logger.debug({ processes: this.#size, concurrency: this.#o.concurrency, prefetch: this.#prefetch * this.#size }, "process pool ready");
  }

  run(job: JobRequest): Promise<JobOutcome> {
    return this.#book.run(job, (entry) => this.#dispatch(entry));
  }

  abort(jobId: string, reason: string): void {
    this.#book.abort(jobId, reason);
  }

  hosts(): number {
    let ready = 0;
    for (const c of this.#children.values()) if (c.ready && c.seat !== undefined) ready++;
    return ready;
  }

  /** Jobs waiting in the children come back interrupted instead of starting; running ones go on. */
  stopStarting(): void {
    this.#draining = true;
    for (const c of this.#children.values()) this.#send(c, { kind: "drain" });
  }

  async close(graceMs: number): Promise<void> {
    this.stopStarting();
    await this.#book.idle(graceMs);
    this.#closing = true;
    this.#book.interruptAll("the worker shut down before the job finished");
    const exits = [...this.#children.values()].map((c) => new Promise((r) => {
      if (c.proc.exitCode !== null || c.proc.signalCode !== null) r(undefined);
      else c.proc.once("exit", r);
    }));
    for (const c of this.#children.values()) c.proc.kill("SIGKILL");
    clearTimeout(this.#retry);
    await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 2_000))]);
    this.#unhookExit?.();
  }

  #dispatch(entry: RunningJob): void {
    // The supervisor runs a whole read batch in one go: one flush a microtask later sends all of it,
    // a message per child instead of one per job.
    this.#pending.push(entry);
    if (this.#flushing) return;
    this.#flushing = true;
    queueMicrotask(() => {
      this.#flushing = false;
      this.#drainPending();
    });
  }

  /**
   * Places the pending jobs on the children with the most room; the rest wait for one. While fewer
   * children can take jobs than there are seats (held by a hang, being replaced), each takes its
   * share, not all: the rest wait for the next child instead of behind a hang.
   */
  #drainPending(): void {
    const pending = this.#pending.filter((e) => !e.settled);
    this.#pending = [];
    if (this.#draining) {
      for (const entry of pending) this.#book.finish(entry.seq, interrupted("the worker shut down before the job started"));
      return;
    }
    const takers = this.#takers();
    const share = takers.length < this.#size ? Math.ceil(pending.length / this.#size) : Infinity;
    const batches = new Map<Child, Array<{ seq: number; job: JobRequest }>>();
    for (const entry of pending) {
      let best: Child | undefined;
      let room = 0;
      for (const c of takers) {
        const free = Math.min(this.#seatSlots(c.seat!) + this.#prefetch - c.jobs.size, share - (batches.get(c)?.length ?? 0));
        if (free > room) [best, room] = [c, free];
      }
      if (!best) {
        this.#pending.push(entry);
        continue;
      }
      best.jobs.set(entry.seq, "waiting");
      const batch = batches.get(best) ?? [];
      batch.push({ seq: entry.seq, job: entry.job });
      batches.set(best, batch);
    }
    for (const [child, jobs] of batches) this.#send(child, { kind: "run", jobs });
    // A hold ends with no message (a long synchronous start returns): look again soon.
    if (this.#pending.length > 0 && takers.length < this.#size && !this.#retry) {
      this.#retry = setTimeout(() => {
        this.#retry = undefined;
        if (!this.#closing) this.#drainPending();
      }, 10);
    }
  }

  /** Seated, ready children not held by an overdue job or one stuck in its synchronous start. */
  #takers(): Child[] {
    const now = performance.now();
    const held = this.#book.heldHosts((e) =>
      now - e.startedAt >= blockedAfterMs && this.#children.get(e.host!)?.jobs.get(e.seq) === "started", now);
    return [...this.#children.values()].filter((c) => c.ready && c.seat !== undefined && !held.has(c.pid));
  }

  /** A seat's share of the concurrency: the shares differ by one at most and add up to it. */
  #seatSlots(seat: number): number {
    const c = this.#o.concurrency;
    return Math.floor(c / this.#size) + (seat < c % this.#size ? 1 : 0);
  }

  /** `seat` undefined: a spare, which takes a seat once one is vacated (see #fillSeats). */
  #spawn(seat: number | undefined): void {
    const childFile = ownFile(import.meta.url, "../../workers/child");
    // On Node, tsx only if the child imports TypeScript: its own entry in a checkout, or app modules.
    const { command, args } = childRuntimeArgs([childFile, ...this.#o.modules].some(isTypeScript));
    // A child stuck in a handler cannot see its worker die: where it can, the kernel kills it then.
    const [cmd, ...rest] = [...dieWithParent(), command, ...args, childFile];
    const proc = spawn(cmd!, rest, { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    if (proc.pid === undefined) {
      proc.once("error", (error) => this.#failedToStart(error));
      return;
    }
    // A spare runs as many at once as the largest seat's share, so only a seat of that share fits it.
    const slots = this.#seatSlots(seat ?? 0);
    const child: Child = { proc, pid: proc.pid, ready: false, started: false, jobs: new Map(), lastBeat: 0, seat, slots };
    if (seat !== undefined) this.#seats[seat] = child.pid;
    this.#children.set(child.pid, child);
    proc.on("message", (report: ChildReport) => this.#report(child, report));
    proc.on("exit", (code, signal) => this.#exited(child, code, signal));
    proc.on("error", (error) => this.#o.logger.warn({ err: error, process: child.pid }, "child process error"));
    this.#send(child, {
      kind: "init", modules: this.#o.modules, redisUrl: this.#o.redisUrl, prefix: this.#o.prefix, tls: portableTls(settings().tls),
      memoryEvery: this.#o.maxMemoryMb ? memoryReportMs : 0, slots,
    });
  }

  /** Gives each vacant seat a ready spare of its share. */
  #fillSeats(): void {
    for (let seat = 0; seat < this.#size; seat++) {
      const pid = this.#seats[seat];
      if (pid !== undefined && this.#children.has(pid)) continue;
      const spare = [...this.#children.values()].find((c) => c.seat === undefined && c.ready && c.slots === this.#seatSlots(seat));
      if (!spare) continue;
      spare.seat = seat;
      this.#seats[seat] = spare.pid;
    }
  }

  #report(child: Child, r: ChildReport): void {
    switch (r.kind) {
      case "ready":
        child.ready = true;
        child.started = true;
        this.#quickDeaths = 0;
        this.#fillSeats();
        if ([...this.#children.values()].filter((c) => c.ready).length >= this.#size) this.#startup?.resolve();
        this.#drainPending();
        return;
      case "failed":
        this.#failedToStart(reviveError(r.error));
        child.proc.kill("SIGKILL");
        return;
      case "start":
        for (const seq of r.seqs) {
          if (child.jobs.get(seq) !== "waiting") continue;
          child.jobs.set(seq, "started");
          this.#book.started(seq, child.pid);
        }
        return;
      case "yielded":
        if (child.jobs.has(r.seq)) child.jobs.set(r.seq, "yielded");
        return;
      case "beat":
        child.lastBeat = performance.now();
        return;
      case "done":
        for (const [seq, outcome] of r.results) {
          child.jobs.delete(seq);
          this.#book.finish(seq, outcome);
        }
        if (this.#pending.length > 0) this.#drainPending();
        return;
      case "crashed":
        child.crash = `${r.error.name}: ${r.error.message}`;
        return;
      case "memory": {
        const limit = this.#o.maxMemoryMb;
        if (!limit || r.bytes <= limit * 1024 * 1024 || this.#book.wasStopped(child.pid)) return;
        this.#book.stopHost(child.pid, `its RSS is ${Math.round(r.bytes / 1024 / 1024)} MB, over --max-memory ${limit} MB`);
        return;
      }
    }
  }

  #exited(child: Child, code: number | null, signal: string | null): void {
    this.#children.delete(child.pid);
    const how = `${signal ?? `code ${code}`}${child.crash ? ` after ${child.crash}` : ""}`;
    if (this.#book.wasStopped(child.pid)) this.#book.forget(child.pid);
    else if (!this.#closing) this.#book.hostCrashed(child.pid, `exited with ${how}`);
    // Jobs that waited in it never began: another child takes them, uncharged.
    for (const [seq, state] of child.jobs) {
      const entry = state === "waiting" ? this.#book.entry(seq) : undefined;
      if (entry && !entry.settled) this.#pending.push(entry);
    }
    if (this.#pending.length > 0 && !this.#closing) queueMicrotask(() => this.#drainPending());
    if (this.#closing) return;
    if (!child.started) {
      if (this.#startup) return this.#startup.reject(new Error(`a child process exited with ${how} before it was ready`));
      // A child that dies before it is ready would die again at once: back off instead of fork-looping.
      this.#quickDeaths++;
    }
    // A seat a ready spare can take goes to it now, and the new child is the next spare; a seat no
    // spare fits (a smaller share) waits for its own new child.
    const seat = child.seat;
    if (seat !== undefined) this.#seats[seat] = undefined;
    this.#fillSeats();
    const vacant = seat !== undefined && this.#seats[seat] === undefined && this.#seatSlots(seat) !== this.#seatSlots(0) ? seat : undefined;
    const delay = this.#quickDeaths === 0 ? 0 : Math.min(100 * 2 ** this.#quickDeaths, 10_000);
    setTimeout(() => !this.#closing && this.#spawn(vacant), delay);
  }

  #failedToStart(error: Error): void {
    if (this.#startup) this.#startup.reject(error);
    else this.#o.logger.error({ err: error }, "a replacement child process could not start");
  }

  /**
   * A child runs its messages in order, so when it shows no sign of life, the first job sent to it
   * whose handler never yielded is the one holding it: the jobs before it yielded, those after it
   * never began.
   */
  #blocker(entry: RunningJob, look = true): RunningJob | undefined {
    const child = this.#children.get(entry.host!);
    if (look) {
      const alive = !child || child.lastBeat > entry.beat;
      entry.beat = performance.now();
      if (alive) return undefined;
    }
    if (!child) return undefined;
    for (const [seq, state] of child.jobs) {
      if (state === "started") return this.#book.entry(seq);
    }
    return undefined;
  }

  #kill(pid: number): void {
    const child = this.#children.get(pid);
    if (!child) return;
    child.ready = false;
    child.proc.kill("SIGKILL");
  }

  #send(child: Child | undefined, command: ChildCommand): void {
    if (!child?.proc.connected) return;
    child.proc.send(command, (error) => {
      if (error) this.#o.logger.debug({ err: error, process: child.pid }, "could not reach a child process");
    });
  }
}
