/**
 * Gives Bun's `TracingChannel` the `hasSubscribers` getter Node and Deno have (oven-sh/bun#27805).
 *
 * Why it matters: ioredis (5.11+) traces a command unless `hasSubscribers` is exactly `false`. On
 * Bun it is `undefined`, so every command built a trace context (its arguments stringified and
 * matched against a list of regexes) and a wrapper promise, with nobody listening. In a worker that
 * is a quarter of the supervisor's CPU per job. The getter answers what Node's does: whether any of
 * the five sub-channels has a subscriber, so an APM that subscribes still gets its traces.
 *
 * Imported for its effect by every module that makes a Redis client; does nothing where the getter
 * exists.
 */
import dc from "node:diagnostics_channel";

type SubChannels = Record<"start" | "end" | "asyncStart" | "asyncEnd" | "error", { hasSubscribers: boolean }>;

function patch(): void {
  if (typeof dc.tracingChannel !== "function") return;
  const proto = Object.getPrototypeOf(dc.tracingChannel("dray:probe")) as object | null;
  if (!proto || "hasSubscribers" in proto) return;
  Object.defineProperty(proto, "hasSubscribers", {
    configurable: true,
    get(this: SubChannels): boolean {
      return this.start.hasSubscribers || this.end.hasSubscribers || this.asyncStart.hasSubscribers ||
        this.asyncEnd.hasSubscribers || this.error.hasSubscribers;
    },
  });
}

patch();
