/**
 * Gives ioredis's tracing channels on Bun the `hasSubscribers` getter Node and Deno have
 * (oven-sh/bun#27805).
 *
 * Why it matters: ioredis (5.11+) traces a command unless `hasSubscribers` is exactly `false`. On
 * Bun it is `undefined`, so every command built a trace context (its arguments stringified and
 * matched against a list of regexes) and a wrapper promise, with nobody listening. In a worker that
 * is a quarter of the supervisor's CPU per job. The getter answers what Node's does: whether any of
 * the five sub-channels has a subscriber, so an APM that subscribes still gets its traces.
 *
 * Scoped: called when dray makes a Redis client, not on import, and it answers only for channels
 * named `ioredis:*` (other libraries' channels read `undefined` as before). ioredis keeps its
 * channels per module, not per client, so a user's own ioredis clients in the same process share
 * the fix. Does nothing where the getter exists.
 */
import dc from "node:diagnostics_channel";

type SubChannel = { hasSubscribers: boolean; name?: string | symbol };
type SubChannels = Record<"start" | "end" | "asyncStart" | "asyncEnd" | "error", SubChannel>;

let patched = false;

export function quietIoredisTracing(): void {
  if (patched) return;
  patched = true;
  if (typeof dc.tracingChannel !== "function") return;
  const proto = Object.getPrototypeOf(dc.tracingChannel("dray:probe")) as object | null;
  if (!proto || "hasSubscribers" in proto) return;
  Object.defineProperty(proto, "hasSubscribers", {
    configurable: true,
    get(this: SubChannels): boolean | undefined {
      if (!String(this.start?.name ?? "").startsWith("tracing:ioredis:")) return undefined;
      return this.start.hasSubscribers || this.end.hasSubscribers || this.asyncStart.hasSubscribers ||
        this.asyncEnd.hasSubscribers || this.error.hasSubscribers;
    },
  });
}
