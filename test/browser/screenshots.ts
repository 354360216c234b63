/**
 * The dashboard's pictures for the docs, taken in headless Chromium:
 *   node --import tsx test/browser/screenshots.ts
 * writes docs/dashboard/{overview,job,dead-letters,actors,workers}.png (1280×800). Same setup as the
 * browser test (setup.ts): two real workers and the dashboard under a fresh prefix, deleted at the end.
 *
 * The traffic is real: a few hundred jobs over five actors, some failing, some retried, a few running,
 * some delayed, one queue paused with a backlog. A run lasts a minute, though, and the overview
 * charts an hour: the 59 minutes before it are backfilled through `HistoryStore.add`, the call the
 * workers' recorder makes, with counts and timings drawn like the live traffic's, so the chart and
 * the "last day" tab show a plausible hour. Nothing else is made up.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { RedisBroker } from "../../src/broker/redis.ts";
import { pauseQueue } from "../../src/operations.ts";
import type { HistoryRow } from "../../src/broker/types.ts";
import { addDuration, addWait, countsOf, mergeTally, newTally, type Tally } from "../../src/history/buckets.ts";
import { email, fail, resize, slow, work } from "../fixtures/dashboard_app.ts";
import { REDIS_URL, root, until } from "../helpers.ts";
import { launchBrowser, startStack, type Stack } from "./setup.ts";
import { open, watchedPage, type WatchedPage } from "./watch.ts";

const out = join(root, "docs", "dashboard");
const minuteMs = 60_000;
const hourMs = 3_600_000;

/** A deterministic random stream, so that the pictures do not change from run to run for no reason. */
function random(seed: number): () => number {
  return () => ((seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648);
}
const rnd = random(7);
const between = (low: number, high: number) => low + rnd() * (high - low);

/** Per actor: jobs a minute, share that fail, run time and wait ranges in ms. */
const traffic = [
  { queue: "email", actor: "send_email", perMinute: 70, failing: 0.01, ms: [6, 45], wait: [1, 30] },
  { queue: "images", actor: "resize_image", perMinute: 30, failing: 0.06, ms: [40, 260], wait: [5, 400] },
  { queue: "dash", actor: "dash_work", perMinute: 16, failing: 0, ms: [3, 20], wait: [1, 15] },
  { queue: "dash", actor: "dash_fail", perMinute: 0.15, failing: 1, ms: [1, 4], wait: [1, 10] },
  { queue: "dash_cron", actor: "dash_tick", perMinute: 60, failing: 0, ms: [0.5, 3], wait: [1, 5] },
] as const;

/**
 * The 59 minutes before this one, each actor's counts drawn around its rate, written as the recorder
 * writes them. Returns how many send_email runs completed in them.
 */
async function backfill(s: Stack): Promise<number> {
  const broker = new RedisBroker({ url: REDIS_URL, prefix: s.prefix });
  try {
    const now = Math.floor(Date.now() / minuteMs) * minuteMs;
    const rows: HistoryRow[] = [];
    const hours = new Map<string, { at: number; queue: string; actor: string; tally: Tally }>();
    for (let at = now - 59 * minuteMs; at < now; at += minuteMs) {
      // A slow swell over the hour, so the chart has a shape.
      const load = 0.6 + 0.5 * Math.sin((at - now) / (9 * minuteMs)) ** 2 + between(-0.15, 0.15);
      for (const t of traffic) {
        const tally = newTally();
        const runs = Math.round(t.perMinute * load + (t.perMinute < 1 ? rnd() * 0.6 : 0));
        for (let i = 0; i < runs; i++) {
          tally.counts.started++;
          addWait(tally, between(t.wait[0], t.wait[1]));
          if (rnd() < t.failing) {
            if (t.actor === "dash_fail") tally.counts.dead++;
            else tally.counts.retried++;
          } else {
            tally.counts.completed++;
            addDuration(tally, between(t.ms[0], t.ms[1]));
          }
        }
        if (runs === 0) continue;
        rows.push({ resolution: "minute", at, queue: t.queue, actor: t.actor, counts: countsOf(tally) });
        const hour = Math.floor(at / hourMs) * hourMs;
        const key = `${hour}|${t.actor}`;
        const h = hours.get(key) ?? { at: hour, queue: t.queue, actor: t.actor, tally: newTally() };
        mergeTally(h.tally, tally);
        hours.set(key, h);
      }
    }
    for (const h of hours.values()) rows.push({ resolution: "hour", at: h.at, queue: h.queue, actor: h.actor, counts: countsOf(h.tally) });
    await broker.history.add(rows);
    return rows.filter((r) => r.resolution === "minute" && r.actor === "send_email").reduce((n, r) => n + (r.counts.completed ?? 0), 0);
  } finally {
    await broker.close();
  }
}

const reasons = [
  "payment gateway timed out after 30 s", "customer c_1042 has no billing address", "PDF renderer exited with code 137",
  "upstream refused the request: 429 Too Many Requests", "invoice inv_88213 is already settled",
];

/** The live part: what the workers run while the pictures are taken. Returns a dead job's id. */
async function liveTraffic(s: Stack): Promise<string> {
  const sends: Array<Promise<unknown>> = [];
  for (let i = 0; i < 180; i++) sends.push(email.send({ to: `user${1000 + i}@example.com`, ms: Math.round(between(6, 45)) }));
  for (let i = 0; i < 90; i++) sends.push(resize.send({ ms: Math.round(between(40, 260)), width: [320, 640, 1280][i % 3]!, flaky: rnd() < 0.08 }));
  for (let i = 0; i < 40; i++) sends.push(work.send({ ms: Math.round(between(3, 20)), note: `order ${52_000 + i}` }));
  for (let i = 0; i < 6; i++) sends.push(work.send({ note: `reminder ${i + 1}` }, { delay: (5 + i * 7) * minuteMs }));
  const dead = await Promise.all(reasons.map((reason, i) => fail.send({ reason, order: 51_990 + i, customer: `c_${1040 + i}` })));
  for (let i = 0; i < 3; i++) sends.push(slow.send({ ms: 10 * minuteMs }));
  await Promise.all(sends);
  await until(async () => (await s.redis.xlen(s.keys.dlq("dash"))) === reasons.length, "the dead letters", 30_000);
  await until(async () => (await s.redis.hlen(`{${s.prefix}:images}:running`)) <= 1 && (await s.redis.hlen(`{${s.prefix}:email}:running`)) <= 1,
    "the first jobs done", 60_000);
  // A paused queue with a backlog, as an operator would leave one while a dependency is down. Both
  // workers read it, and take it as paused once they log so.
  await pauseQueue("images");
  await until(() => s.workers.every((w) => w.logs.some((l) => l.msg === "queue paused" && l.queue === "images")), "images paused", 10_000);
  await Promise.all(Array.from({ length: 24 }, (_, i) => resize.send({ ms: 100, width: 640 + i })));
  return dead[0]!.id;
}

async function shoot(w: WatchedPage, s: Stack, path: string, name: string): Promise<void> {
  await open(w, s.admin.url, path);
  await w.page.screenshot({ path: join(out, `${name}.png`), fullPage: false });
  console.log(`wrote docs/dashboard/${name}.png (${path})`);
}

let stack: Stack | undefined;
const browser = await launchBrowser();
try {
  stack = await startStack("shots", [["--queues", "email,images", "--concurrency", "8", "--threads", "1"]]);
  const s = stack;
  const backfilled = await backfill(s);
  const deadId = await liveTraffic(s);
  const w = await watchedPage(browser);
  // Rollups land every 500 ms: wait until the per-actor page counts the live emails too.
  await open(w, s.admin.url, "/actors");
  await until(async () => {
    const cell = w.page.locator(`tr[data-actor="send_email"] td:nth-child(4)`);
    const total = Number((await cell.innerText()).replace(/,/g, ""));
    if (total >= backfilled + 180) return true;
    await w.page.reload();
  }, "the live runs in the rollups", 30_000);
  // Heartbeats every 500 ms: wait until the workers page shows what they ran.
  await open(w, s.admin.url, "/workers");
  await until(async () => {
    const processed = await w.page.locator("table#workers tbody tr td:nth-child(8)").allInnerTexts();
    if (processed.length === 2 && processed.every((n) => Number(n.replace(/,/g, "")) > 0)) return true;
    await w.page.reload();
  }, "the workers' counts in their heartbeats", 15_000);
  mkdirSync(out, { recursive: true });
  await shoot(w, s, "/", "overview");
  await shoot(w, s, `/jobs?id=${deadId}&queue=dash`, "job");
  await shoot(w, s, "/dead/dash", "dead-letters");
  await shoot(w, s, "/actors", "actors");
  await shoot(w, s, "/workers", "workers");
  if (w.problems.length > 0) throw new Error(`the pages had problems:\n${w.problems.join("\n")}`);
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
  await stack?.stop();
}
