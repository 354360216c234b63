/**
 * Pipelines on a Redis Cluster whose slot moved under them (a reshard): what a redirected command
 * gets instead of failing its caller.
 */
import type { Cluster, Redis } from "ioredis";
import { isCluster } from "./cluster.ts";

/** A command's reply in a pipeline: its error, or null and its value. */
export type Reply = [Error | null, unknown];

/**
 * A Cluster pipeline's commands that met a redirection (ASK, MOVED, TRYAGAIN: a slot moving), sent
 * again one by one through the Cluster client, which follows redirections and waits out TRYAGAIN. A
 * redirected command did not run, so sending it again is safe. ioredis retries a pipeline itself only
 * when every reply is the same redirection, so a send whose record SET met ASK (the key already
 * moved) while its XADD ran (the stream not yet) would otherwise reject, though its job was queued.
 * The command goes again at once, before the caller hears of it: long before a worker could finish
 * the job and write the record that a late SET would overwrite.
 */
export async function resendRedirected(redis: Redis | Cluster, replies: Reply[]): Promise<Reply[]> {
  if (!isCluster(redis) || !replies.some(([error]) => error && REDIRECTED.test(error.message))) return replies;
  return await Promise.all(replies.map(async (reply): Promise<Reply> => {
    const command = (reply[0] as { command?: { name: string; args: unknown[] } } | null)?.command;
    if (!reply[0] || !REDIRECTED.test(reply[0].message) || !command) return reply;
    try {
      return [null, await resend(redis, command.name, command.args)];
    } catch (error) {
      return [error as Error, null];
    }
  }));
}

const REDIRECTED = /^(ASK|MOVED|TRYAGAIN) /;

function resend(redis: Cluster, name: string, args: unknown[]): Promise<unknown> {
  if (name.toLowerCase() === "evalsha") {
    // EVAL, not EVALSHA: the master the slot moved to may never have loaded the script.
    const scripts = (redis as unknown as { scriptsSet?: Record<string, { sha: string; lua: string }> }).scriptsSet ?? {};
    const script = Object.values(scripts).find((s) => s.sha === args[0]);
    if (script) return redis.call("eval", script.lua, ...(args.slice(1) as string[]));
  }
  const method = (redis as unknown as Record<string, unknown>)[name];
  // The client's own method where there is one: it shapes the reply as the pipeline would have.
  if (typeof method === "function") return (method as (...a: unknown[]) => Promise<unknown>).apply(redis, args);
  return redis.call(name, ...(args as string[]));
}
