/**
 * `dray worker --processes N`: this process becomes a parent that runs N `dray worker` processes of
 * its own runtime, as Dramatiq's `--processes` does. Each child is a whole worker (supervisor, pool,
 * heartbeat, its own consumer name) in the same consumer groups, so Redis spreads the jobs over
 * them; the parent runs no job. It ticks the modules' crons once for all of them (the children get
 * --no-cron), restarts a child that exits unasked after a growing delay, and passes stop signals on.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import { registry } from "../actor.ts";
import { crons } from "../cron/cron.ts";
import { ConfigError } from "../errors.ts";
import {
  childRuntimeArgs, dieWithParent, envWith, exit, isTypeScript, onProcessExit, ownFile, signalProcess,
} from "../runtime/mod.ts";
import { loadModules } from "../worker.ts";
import { onStopSignals } from "./signals.ts";
import { standaloneTicker } from "./ticker.ts";

export interface FleetOptions {
  processes: number;
  /** The app modules, as given: the parent imports them too, to check them and find their crons. */
  modules: string[];
  /** `dray worker` arguments for every child: the parent's, less --processes and --metrics-port. */
  args: string[];
  /** Child i serves its metrics on this port + i. */
  metricsPort?: number | undefined;
  /** Tick the modules' crons here (false: --no-cron). */
  cron: boolean;
  logger: Logger;
}

/**
 * Delays before a child that exited unasked is started again: doubling from the first to the cap,
 * back to the first once a child stayed up long enough. A child that dies on start (a module that
 * throws, Redis refusing it) is then started every 30 s, not in a loop that eats the machine.
 */
export const restartDelay = { firstMs: 1_000, maxMs: 30_000, resetAfterMs: 60_000 };

interface Slot {
  index: number;
  proc?: ChildProcess | undefined;
  pid?: number | undefined;
  startedAt: number;
  nextDelayMs: number;
  restart?: ReturnType<typeof setTimeout> | undefined;
  /** Once stopping: whether it ended as it should. */
  clean?: boolean;
}

/** Runs the children until a stop signal, then exits with 0 if each of them stopped cleanly, else 1. */
export async function runFleet(o: FleetOptions): Promise<never> {
  const logger = o.logger.child({ process: "parent" });
  await loadModules(o.modules);
  if (registry.size === 0) throw new ConfigError(`no actors defined in ${o.modules.join(", ")}`);
  const ticker = o.cron && crons.size > 0 ? standaloneTicker(logger) : undefined;
  const fleet = new Fleet({ ...o, logger });
  const code = new Promise<number>((resolve) => {
    onStopSignals((signal) => {
      logger.info({ signal }, "stopping the worker processes: each drains within its shutdown grace");
      void Promise.all([fleet.stop(signal), ticker?.stop()]).then(([clean]) => resolve(clean ? 0 : 1));
    }, (signal) => {
      logger.warn({ signal }, "second signal: killing the worker processes");
      fleet.kill();
      exit(1);
    });
  });
  logger.info({ processes: o.processes, cron: ticker !== undefined }, "starting worker processes");
  fleet.start();
  ticker?.start();
  const result = await code;
  logger.info({ code: result }, "worker processes stopped");
  // App modules may hold handles (pools, timers) that would keep the process up.
  exit(result);
}

/** The children: started, restarted, stopped. */
export class Fleet {
  readonly #o: FleetOptions;
  readonly #slots: Slot[];
  /** The signal passed on to the children; from then on none is restarted. */
  #stopping: string | undefined;
  #allExited: (() => void) | undefined;
  #unhookExit: (() => void) | undefined;

  constructor(options: FleetOptions) {
    this.#o = options;
    this.#slots = Array.from({ length: options.processes }, (_, index) => ({
      index, startedAt: 0, nextDelayMs: restartDelay.firstMs,
    }));
  }

  start(): void {
    // Where the kernel cannot kill the children with this process (no setpriv), an exit short of
    // SIGKILL still takes them along.
    this.#unhookExit = onProcessExit(() => this.kill());
    for (const slot of this.#slots) this.#spawn(slot);
  }

  /** Passes `signal` on to every child and waits for all to exit: true when each stopped cleanly. */
  async stop(signal: string): Promise<boolean> {
    this.#stopping = signal;
    const exited = new Promise<void>((resolve) => (this.#allExited = resolve));
    for (const slot of this.#slots) {
      if (slot.restart !== undefined) {
        // Down since its last crash, waiting for its restart: that exit was not a clean one.
        clearTimeout(slot.restart);
        slot.restart = undefined;
        slot.clean = false;
      }
      if (slot.pid !== undefined) signalProcess(slot.pid, signal);
    }
    this.#checkExited();
    await exited;
    this.#unhookExit?.();
    return this.#slots.every((s) => s.clean);
  }

  /** Ends every child now: what they ran goes back to the queues once its claim lapses. */
  kill(): void {
    for (const slot of this.#slots) slot.proc?.kill("SIGKILL");
  }

  #spawn(slot: Slot): void {
    const main = ownFile(import.meta.url, "./main");
    // On Node, tsx if the child imports TypeScript: dray's own entry in a checkout, or app modules.
    const { command, args } = childRuntimeArgs([main, ...this.#o.modules].some(isTypeScript));
    const port = this.#o.metricsPort === undefined ? [] : ["--metrics-port", String(this.#o.metricsPort + slot.index)];
    const noCron = this.#o.args.includes("--no-cron") ? [] : ["--no-cron"];
    // A child cannot see this process die of SIGKILL: where it can, the kernel kills it then.
    const [cmd, ...rest] = [...dieWithParent(), command, ...args, main, "worker", ...this.#o.args, ...noCron, ...port];
    const proc = spawn(cmd!, rest, {
      stdio: ["ignore", "inherit", "inherit"],
      env: envWith({ DRAY_PROCESS_INDEX: String(slot.index) }),
    });
    slot.proc = proc;
    slot.pid = proc.pid;
    slot.startedAt = Date.now();
    let ended = false;
    const end = (code: number | null, signal: string | null, error?: Error) => {
      if (ended) return;
      ended = true;
      this.#exited(slot, code, signal, error);
    };
    proc.once("exit", (code, signal) => end(code, signal));
    // A child that could not be started at all (the runtime's binary gone) gets no exit event.
    proc.once("error", (error) => proc.pid === undefined ? end(null, null, error) : this.#o.logger.warn(
      { err: error, child: slot.index, childPid: proc.pid }, "worker process error"));
    if (proc.pid !== undefined) this.#o.logger.info({ child: slot.index, childPid: proc.pid }, "worker process started");
  }

  #exited(slot: Slot, code: number | null, signal: string | null, error?: Error): void {
    const pid = slot.pid;
    slot.proc = undefined;
    slot.pid = undefined;
    // `pid` is pino's own field (this process's), hence `childPid`.
    const how = { child: slot.index, childPid: pid, ...(code !== null ? { code } : {}), ...(signal ? { signal } : {}),
      ...(error ? { err: error } : {}) };
    if (this.#stopping !== undefined) {
      // Killed by the signal passed on, the child had not yet set its own handler: it had taken no job.
      slot.clean = code === 0 || signal === this.#stopping;
      this.#o.logger.info(how, "worker process exited");
      this.#checkExited();
      return;
    }
    const uptimeMs = Date.now() - slot.startedAt;
    const delay = uptimeMs >= restartDelay.resetAfterMs ? restartDelay.firstMs : slot.nextDelayMs;
    slot.nextDelayMs = Math.min(delay * 2, restartDelay.maxMs);
    this.#o.logger.warn({ ...how, uptimeMs, restartInMs: delay }, "worker process exited; restarting it");
    slot.restart = setTimeout(() => {
      slot.restart = undefined;
      if (this.#stopping === undefined) this.#spawn(slot);
    }, delay);
  }

  #checkExited(): void {
    if (this.#slots.every((s) => s.proc === undefined && s.restart === undefined)) this.#allExited?.();
  }
}
