/**
 * The dashboard's routes: pages (GET, server-rendered HTML), their live fragments (`?fragment=live`),
 * and the actions (POST /api/…, JSON). Every read and write goes through src/operations.ts, the same
 * module under the CLI and /metrics. Hono earns its place here: one `fetch` handler that Bun.serve,
 * Deno.serve and Node (through @hono/node-server) all serve, routing, escaping templates, and the
 * security middleware (bearer token compared in constant time, security headers with the CSP).
 */
import { Hono, type Context } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { HTTPException } from "hono/http-exception";
import { secureHeaders } from "hono/secure-headers";
import { timeout } from "hono/timeout";
import type { Logger } from "pino";
import type { Broker } from "../broker/types.ts";
import { ConfigError } from "../errors.ts";
import { NAME_PATTERN } from "../message.ts";
import {
  actorHistory, browseQueue, cronRuns, getWorkers, inspectJob, jobStates, jobsPerMinute, listCrons, liveOverview, pauseQueue, purgeDead, requeueDead, resumeQueue,
  type JobState,
} from "../operations.ts";
import { icon, script, stylesheet } from "./assets.ts";
import type { MinutePoint } from "./chart.ts";
import { problem, type Html, type View } from "./layout.ts";
import { actorsPage, type StatsWindow } from "./pages/actors.ts";
import { cronPage, cronsPage } from "./pages/crons.ts";
import { deadIndexPage, deadPage } from "./pages/dead.ts";
import { jobNotFound, jobPage } from "./pages/job.ts";
import { overviewLive, overviewPage, type OverviewData } from "./pages/overview.ts";
import { jobTable, queuePage } from "./pages/queue.ts";
import { workersLive, workersPage } from "./pages/workers.ts";

export interface AppOptions {
  broker: Broker;
  /** Empty or undefined: read-only. */
  token: string | undefined;
  basePath: string;
  logger: Logger;
  timeoutMs: number;
}

/** The longest cursor a page link can carry; anything longer is not one of ours. */
const maxCursor = 1_000;

export function createApp(o: AppOptions): Hono {
  const { broker, logger } = o;
  const readOnly = !o.token;
  const app = new Hono().basePath(o.basePath || "/");
  const view = (section: View["section"]): View => ({ base: o.basePath, readOnly, section });
  const overview = liveOverview(broker);

  app.use(secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'none'"], scriptSrc: ["'self'"], styleSrc: ["'self'"], imgSrc: ["'self'"], connectSrc: ["'self'"],
      formAction: ["'self'"], frameAncestors: ["'none'"], baseUri: ["'none'"],
    },
    referrerPolicy: "no-referrer",
    // Served over plain HTTP on loopback by default; HSTS belongs to whatever terminates TLS in front.
    strictTransportSecurity: false,
  }));
  app.use(async (c, next) => {
    await next();
    c.header("Cache-Control", "no-store");
  });
  app.use(timeout(o.timeoutMs, () => new HTTPException(503, { message: `Redis did not answer within ${o.timeoutMs} ms` })));

  app.get("/assets/dashboard.js", (c) => c.body(script, 200, { "content-type": "text/javascript; charset=utf-8" }));
  app.get("/assets/dashboard.css", (c) => c.body(stylesheet, 200, { "content-type": "text/css; charset=utf-8" }));
  app.get("/assets/icon.svg", (c) => c.body(icon, 200, { "content-type": "image/svg+xml" }));

  const overviewData = async (): Promise<OverviewData> => {
    const now = Date.now();
    const to = now - (now % 60_000);
    const [queues, points] = await Promise.all([overview(), jobsPerMinute({ from: to - 59 * 60_000, to }, broker)]);
    const minutes: MinutePoint[] = points.map((p) => ({ at: p.at, completed: p.completed, failed: p.failed }));
    return { queues, minutes };
  };
  app.get("/", async (c) => {
    const data = await overviewData();
    return live(c) ? c.html(overviewLive(view("overview"), data)) : c.html(overviewPage(view("overview"), data));
  });

  app.get("/queues/:queue", async (c) => {
    const queue = queueParam(c.req.param("queue"));
    const state = (c.req.query("state") ?? "ready") as JobState;
    if (!jobStates.includes(state)) throw new ConfigError(`no job state "${state}": ${jobStates.join(", ")}`);
    if (state === "dead") return c.redirect(`${o.basePath}/dead/${encodeURIComponent(queue)}`);
    const cursor = cursorParam(c.req.query("cursor"));
    const [all, jobs] = await Promise.all([overview(), browseQueue(queue, state, { broker, ...(cursor ? { cursor } : {}) })]);
    const stats = all.find((s) => s.queue === queue);
    if (!stats) return c.html(problem(view("queues"), "Unknown queue", `No queue named "${queue}": no worker declared it.`), 404);
    const data = { stats, state, jobs, ...(cursor ? { cursor } : {}) };
    return live(c) ? c.html(jobTable(view("queues"), data)) : c.html(queuePage(view("queues"), data));
  });

  app.get("/jobs", async (c) => {
    const id = c.req.query("id");
    if (id === undefined || id === "") return c.html(problem(view("jobs"), "Find a job", "Type a job id in the search box."), 400);
    const queue = c.req.query("queue");
    const detail = await inspectJob(id, { broker, ...(queue ? { queue: queueParam(queue) } : {}) });
    return detail ? c.html(jobPage(view("jobs"), detail)) : c.html(jobNotFound(view("jobs"), id), 404);
  });

  app.get("/dead", async (c) => c.html(deadIndexPage(view("dead"), await overview())));
  app.get("/dead/:queue", async (c) => {
    const queue = queueParam(c.req.param("queue"));
    const cursor = cursorParam(c.req.query("cursor"));
    const [all, letters] = await Promise.all([overview(), browseQueue(queue, "dead", { broker, ...(cursor ? { cursor } : {}) })]);
    const stats = all.find((s) => s.queue === queue);
    if (!stats) return c.html(problem(view("dead"), "Unknown queue", `No queue named "${queue}": no worker declared it.`), 404);
    return c.html(deadPage(view("dead"), queue, letters, stats.dead));
  });

  app.get("/crons", async (c) => c.html(cronsPage(view("crons"), await listCrons(broker))));
  app.get("/crons/:name", async (c) => {
    const name = c.req.param("name");
    if (!NAME_PATTERN.test(name)) throw new ConfigError(`"${name.slice(0, 200)}" is not a cron name`);
    const runs = await cronRuns(name, { broker, limit: 100 });
    return runs ? c.html(cronPage(view("crons"), name, runs)) : c.html(problem(view("crons"), "Unknown cron", `No cron named "${name}" was published.`), 404);
  });

  app.get("/workers", async (c) => {
    const workers = await getWorkers(broker);
    return live(c) ? c.html(workersLive(workers)) : c.html(workersPage(view("workers"), workers));
  });

  app.get("/actors", async (c) => {
    const window = (c.req.query("window") ?? "hour") as StatsWindow;
    if (window !== "hour" && window !== "day") throw new ConfigError(`window is "hour" or "day", not "${window}"`);
    return c.html(actorsPage(view("actors"), window, await actorHistory(window, broker)));
  });

  // Actions: POST only, with the token in the Authorization header. A cross-site form can post to
  // this origin but cannot set that header, and no cookie is ever set, so the token is the CSRF defence.
  app.post("/api/*", readOnly
    ? (c) => c.json({ error: "Read-only: this dashboard has no token (start it with DRAY_DASHBOARD_TOKEN) so it changes nothing." }, 403)
    : bearerAuth({
      token: o.token!,
      noAuthenticationHeader: { message: { error: "Enter the dashboard token first (the box at the top right)." } },
      invalidAuthenticationHeader: { message: { error: "The token is malformed." } },
      invalidToken: { message: { error: "Wrong token." } },
    }));
  app.post("/api/queues/:queue/pause", async (c) => {
    const queue = queueParam(c.req.param("queue"));
    const { declared } = await pauseQueue(queue, broker);
    logger.info({ queue }, "dashboard: queue paused");
    return c.json({ message: `Paused ${queue}${declared ? "" : " (no worker declared it yet)"}.` });
  });
  app.post("/api/queues/:queue/resume", async (c) => {
    const queue = queueParam(c.req.param("queue"));
    const { wasPaused } = await resumeQueue(queue, broker);
    logger.info({ queue }, "dashboard: queue resumed");
    return c.json({ message: wasPaused ? `Resumed ${queue}.` : `${queue} was not paused.` });
  });
  app.post("/api/dead/:queue/:verb{requeue|purge}", async (c) => {
    const queue = queueParam(c.req.param("queue"));
    const verb = c.req.param("verb");
    const ids = await letterIds(c);
    const n = verb === "requeue" ? await requeueDead(queue, ids, broker) : await purgeDead(queue, ids, broker);
    logger.info({ queue, letters: ids?.length ?? "all", done: n }, `dashboard: dead letters ${verb}d`);
    return c.json({ message: `${verb === "requeue" ? "Requeued" : "Purged"} ${n} dead letter${n === 1 ? "" : "s"} of ${queue}.` });
  });

  app.notFound((c) => c.req.path.includes("/api/")
    ? c.json({ error: "no such action" }, 404)
    : c.html(problem(view("overview"), "Not found", `Nothing at ${c.req.path}.`), 404));
  app.onError((error, c) => answerError(c, error, view("overview"), logger));
  return app;
}

const live = (c: Context): boolean => c.req.query("fragment") === "live";

function queueParam(queue: string): string {
  if (!NAME_PATTERN.test(queue)) throw new ConfigError(`"${queue.slice(0, 200)}" is not a queue name: 1-200 letters, digits and _ . : -`);
  return queue;
}

function cursorParam(cursor: string | undefined): string | undefined {
  if (cursor !== undefined && cursor.length > maxCursor) throw new ConfigError("that page cursor is not one this dashboard made");
  return cursor || undefined;
}

/** The letters a form named (`ids`, one or many), or undefined for all of them (`all=1`). */
async function letterIds(c: Context): Promise<string[] | undefined> {
  const body = await c.req.parseBody({ all: true });
  if (body.all === "1") return undefined;
  const raw = body.ids;
  const ids = (Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]).filter((v): v is string => typeof v === "string");
  if (ids.length === 0) throw new ConfigError("select at least one dead letter");
  if (ids.length > 1_000 || ids.some((id) => !/^\d{1,20}-\d{1,20}$/.test(id))) throw new ConfigError("those are not dead-letter ids");
  return ids;
}

/**
 * Bad input (a malformed id, an unknown state, a garbage cursor) is a 400 saying what was wrong;
 * Redis away is a 503; anything else a 500 whose details go to the log, never to the page.
 */
function answerError(c: Context, error: Error, view: View, logger: Logger): Response | Promise<Response> {
  const api = c.req.path.includes("/api/");
  let status: 400 | 500 | 503;
  let detail: string;
  if (error instanceof HTTPException) {
    if (error.status !== 503) return error.getResponse();
    [status, detail] = [503, error.message];
  } else if (error instanceof ConfigError) {
    [status, detail] = [400, error.message];
  } else if (isRedisDown(error)) {
    logger.warn({ err: error, path: c.req.path }, "dashboard: Redis did not answer");
    [status, detail] = [503, "Redis did not answer; try again in a moment."];
  } else {
    logger.error({ err: error, path: c.req.path }, "dashboard: request failed");
    [status, detail] = [500, "Something went wrong; the dashboard's log has the details."];
  }
  if (api) return c.json({ error: detail }, status);
  const title = status === 400 ? "Bad request" : status === 503 ? "Redis unavailable" : "Error";
  return c.html(problem(view, title, detail) as Html, status);
}

function isRedisDown(error: Error): boolean {
  const text = `${error.name} ${error.message} ${(error as { code?: string }).code ?? ""}`;
  return /MaxRetriesPerRequest|Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|BrokerError|ReplyError|Redis/i.test(text);
}
