/**
 * The example app: the seeds' jobs (welcome email, order processing, cleanup) as dray actors.
 * Run it with `bun run worker` (or `deno task worker`, `npm run worker`), then send from anywhere:
 *   bun examples/send.ts
 */
import { z } from "zod";
import { actor, cron, Retry } from "../src/mod.ts";

export class BadAddress extends Error {
  override name = "BadAddress";
}

/** Dramatiq's `mailing_send_task`: the queue is the context, retried with backoff, never for a bad address. */
export const sendEmail = actor("mailing_send_task", {
  queue: "email",
  schema: z.object({ to: z.string().email(), subject: z.string(), body: z.string().default("") }),
  maxRetries: 20,
  minBackoff: 15_000,
  maxBackoff: 3_600_000,
  maxAge: 300_000,
  timeLimit: 60_000,
  throws: [BadAddress],
}, async ({ to, subject }, ctx) => {
  if (to.endsWith("@invalid.example")) throw new BadAddress(`cannot deliver to ${to}`);
  if (to.startsWith("flaky") && ctx.attempt < 3) throw new Retry({ delay: 1_000, message: "smtp busy" });
  ctx.logger.info({ to, subject, attempt: ctx.attempt }, "email sent");
  return { delivered: to };
});

/** The seeds' order processing: payment, stock, then the confirmation email as another job. */
export const processOrder = actor("process_order", {
  queue: "processing",
  schema: z.object({ orderId: z.number().int(), email: z.string().email() }),
  maxRetries: 3,
  timeLimit: 120_000,
}, async ({ orderId, email }, ctx) => {
  await new Promise((r) => setTimeout(r, 20)); // payment and inventory calls
  await sendEmail.send({ to: email, subject: `Order confirmation #${orderId}` });
  ctx.logger.info({ orderId }, "order processed");
  return { orderId, status: "processed" };
});

/** The seeds' periodic cleanup (Django-CFG's `DRAMATIQ_CRON_JOBS`, ARQ's `cron_jobs`), run by the cron below. */
export const cleanupOldData = actor("cleanup_old_data", { queue: "maintenance", timeLimit: 300_000 }, async (_payload, ctx) => {
  const removed = await ctx.redis.eval("return 0", 0); // stands in for deleting expired rows
  ctx.logger.info({ removed }, "cleanup done");
  return { removed };
});

/** A sign of life: every worker (or `dray scheduler`) ticks it, and exactly one run happens per tick. */
export const heartbeat = actor("heartbeat", { queue: "maintenance", timeLimit: 5_000 }, (_payload, ctx) => {
  ctx.logger.info("heartbeat");
});

// Daily at 03:00 Paris time, summer and winter.
cron("0 3 * * *", cleanupOldData, { timezone: "Europe/Paris" });
// Six fields: seconds first. Every 30 s, so a running example worker visibly ticks.
cron("*/30 * * * * *", heartbeat);
