import type { Logger } from "pino";
import type { Control } from "./broker/types.ts";

export interface PausesOptions {
  control: Control;
  /** The worker's own queues: only their pauses matter to it. */
  queues: readonly string[];
  logger: Logger;
  /** Called when one of `queues` was paused or resumed, so a blocking read can be cut short. */
  onChange: () => void;
  /** How often the paused set is read, ms. @default 1_000 */
  every?: number;
}

/**
 * The queues an operator paused, as one worker sees them: read at start, then once a second on a
 * timer (one SMEMBERS), so that the read loop only looks at a list in memory and pays nothing per
 * job for pauses.
 */
export class Pauses {
  readonly #o: PausesOptions;
  #paused = new Set<string>();
  #active: string[];
  #timer: ReturnType<typeof setInterval> | undefined;
  #reading = false;
  #closed = false;
  #wake: (() => void) | undefined;

  constructor(options: PausesOptions) {
    this.#o = options;
    this.#active = [...options.queues];
  }

  /** The worker's queues that are not paused: the ones to read. */
  get active(): string[] {
    return this.#active;
  }

  /** Reads the paused set once (a failure here fails the start, as any other Redis call there), then every second. */
  async start(): Promise<void> {
    this.#apply(await this.#o.control.paused());
    // Closed while that read waited (a signal during start): a timer now would keep the process up.
    if (this.#closed) return;
    this.#timer = setInterval(() => void this.#refresh(), this.#o.every ?? 1_000);
  }

  /** Resolves when the set of active queues changes, on close, or after `ms` at the latest. */
  changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.#closed) return resolve();
      const timer = setTimeout(() => this.#wake?.(), ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
    });
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#wake?.();
  }

  async #refresh(): Promise<void> {
    // With Redis slow or away, a read still waiting must not be joined by one more every second.
    if (this.#reading) return;
    this.#reading = true;
    try {
      this.#apply(await this.#o.control.paused());
    } catch (error) {
      // The last known set holds; the read loop meets the same outage and backs off on its own.
      this.#o.logger.debug({ err: error }, "reading the paused queues failed; keeping the last known");
    } finally {
      this.#reading = false;
    }
  }

  #apply(all: string[]): void {
    const paused = new Set(all.filter((q) => this.#o.queues.includes(q)));
    const changes = this.#o.queues.filter((q) => paused.has(q) !== this.#paused.has(q));
    if (changes.length === 0) return;
    this.#paused = paused;
    this.#active = this.#o.queues.filter((q) => !paused.has(q));
    this.#wake?.();
    this.#o.onChange();
    // Logged once the read in progress was told to end, so the line means the pause is in effect.
    for (const queue of changes) this.#o.logger.info({ queue }, paused.has(queue) ? "queue paused" : "queue resumed");
  }
}
