import { parseArgs } from "node:util";
import { RedisBroker } from "../broker/redis.ts";
import { settings } from "../config.ts";
import { UsageError } from "../errors.ts";
import { helpRequested } from "./usage.ts";
import { positiveInt } from "./worker.ts";

export const usage = `usage: dray dlq list [--queue q] [--limit N] [--json]
       dray dlq requeue [--queue q] [--id ID ...]
       dray dlq purge --queue q | --all

list     the dead letters of each queue (or of one): id, time, retries, actor, error
requeue  sends dead letters back to their queue; with --id, only those (repeat --id for more)
purge    removes dead letters for good and says how many; --all for every queue's

options:
  --queue q   only this queue (default: every queue; purge needs --queue or --all)
  --id ID     requeue only the letter with this id; may be repeated
  --limit N   list: at most this many letters per queue (default 100)
  --json      list: one JSON object per line
  --all       purge: every queue's dead letters
  -h, --help  this help

environment: REDIS_URL, DRAY_PREFIX (see 'dray --help')`;

export async function run(args: string[]): Promise<void> {
  if (helpRequested(args, usage)) return;
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      queue: { type: "string" },
      id: { type: "string", multiple: true },
      limit: { type: "string" },
      json: { type: "boolean" },
      all: { type: "boolean" },
    },
  });
  const action = positionals[0] ?? "list";
  if (!["list", "requeue", "purge"].includes(action)) throw new UsageError(`unknown action "${action}" (list, requeue, purge)`);
  // Purging cannot be undone, so emptying every queue has to be asked for by name; before Redis is
  // touched, so a bare `purge` removes nothing.
  if (action === "purge" && !values.queue && !values.all) {
    throw new UsageError("purge: give --queue <q> to empty one queue's dead letters, or --all to empty every queue's");
  }
  if (values.queue && values.all) throw new UsageError("give --queue <q> or --all, not both");
  const s = settings();
  const broker = new RedisBroker({ url: s.redisUrl, prefix: s.prefix });
  try {
    const queues = values.queue ? [values.queue] : await broker.queues();
    let purged = 0;
    for (const queue of queues) {
      if (action === "list") {
        const letters = await broker.deadLetters(queue, { limit: values.limit ? positiveInt("--limit", values.limit) : 100 });
        if (values.json) {
          for (const l of letters) console.log(JSON.stringify(l));
          continue;
        }
        for (const l of letters) {
          const m = "raw" in l.message ? `(malformed) ${l.message.raw.slice(0, 60)}` : `${l.message.actor} ${l.message.id}`;
          console.log(`${queue}\t${l.id}\t${new Date(l.at).toISOString()}\tretries=${l.retries}\t${m}\t${l.error.name}: ${l.error.message}`);
        }
      } else if (action === "requeue") {
        const n = await broker.requeue(queue, values.id);
        console.log(`${queue}: requeued ${n}`);
        // What stayed: letters whose jobId a newer job holds (or, with --id, ids that are not letters).
        const stayed = values.id ? values.id.length - n : (await broker.stats(queue)).dead;
        if (stayed > 0) {
          console.log(`${queue}: ${stayed} not requeued: a newer job holds their jobId (requeue them once it settles)` +
            (values.id ? ", or no such letter" : ""));
        }
      } else {
        const n = await broker.purgeDeadLetters(queue);
        purged += n;
        console.log(`${queue}: purged ${n}`);
      }
    }
    if (action === "purge" && values.all) {
      console.log(`purged ${purged} dead letter${purged === 1 ? "" : "s"} in ${queues.length} queue${queues.length === 1 ? "" : "s"}`);
    }
  } finally {
    await broker.close();
  }
}
