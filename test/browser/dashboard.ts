/**
 * The dashboard end to end in headless Chromium, in its own runner (like test/smoke/smoke.ts):
 *   node --import tsx test/browser/dashboard.ts
 * A worker on test/fixtures/dashboard_app.ts and two `dray dashboard` servers (one with a token, one
 * read-only) run as child processes under a fresh key prefix (test/browser/setup.ts). The test sends
 * jobs whose payloads and errors hold markup, then opens every page, watching for console errors,
 * failed requests and CSP violations; finds a job with the search box; clicks pause, resume, requeue
 * and purge and checks in Redis what they did; checks that the read-only server and a missing or
 * wrong token change nothing; that markup from Redis shows as text; that the overview refreshes
 * itself; and that bad input gets a 4xx page. Prints "ok - ..." / "not ok - ..." per check ("# SKIP
 * why" when it cannot run here: no Redis or no Chromium outside CI) and ends with exactly one line
 * "N passed, N failed, N skipped"; exits 1 on a failure.
 */
import process from "node:process";
import type { Browser } from "playwright-core";
import { pipeline } from "../../src/mod.ts";
import { fail, slow, work, xssError } from "../fixtures/dashboard_app.ts";
import { assert, check, fail as notOk, finish, skip } from "../checks.ts";
import { REDIS_URL, redisAvailable, until } from "../helpers.ts";
import { chromiumAvailable, chromiumPath, deadLetters, launchBrowser, redisState, runtime, startStack, type Stack } from "./setup.ts";
import { clean, flash, open, pagesChecked, textOf, watchedPage, type WatchedPage } from "./watch.ts";

const scriptPayload = "<script>window.__xss=1</script>";
const imgPayload = `<img src=x onerror="window.__xss=1">`;

/** What the test sent, by what should have become of it. */
interface Sent {
  completed: string[];
  dead: string[];
  delayed: string;
  pipeline: [string, string];
  running: string;
}

async function sendJobs(): Promise<Sent> {
  const completed = await Promise.all([1, 2, 3, 4, 5].map(async (n) => (await work.send({ note: `${scriptPayload} #${n}` })).id));
  const dead = await Promise.all([1, 2, 3, 4, 5].map(async (n) => (await fail.send({ html: imgPayload, n })).id));
  const delayed = (await work.send({ note: scriptPayload }, { delay: 600_000 })).id;
  const steps = await pipeline([work.message({ note: "first step" }), work.message({ note: "second step" })]).send({ delay: 600_000 });
  const running = (await slow.send({ ms: 120_000 })).id;
  return { completed, dead, delayed, pipeline: [steps.jobs[0]!.id, steps.jobs[1]!.id], running };
}

const refOf = async (s: Stack, jobId: string): Promise<string | undefined> =>
  [...(await deadLetters(s))].find(([, id]) => id === jobId)?.[0];

async function queuePages(s: Stack, sent: Sent, w: WatchedPage): Promise<void> {
  const base = s.admin.url;
  await check("overview: a row per queue, the chart, no console errors or CSP violations", async () => {
    await open(w, base, "/");
    for (const q of ["dash", "dash_slow", "dash_cron"]) await w.page.locator(`table#queues tr[data-queue="${q}"]`).waitFor();
    const dead = await textOf(w, `tr[data-queue="dash"] td:nth-child(5)`);
    assert(dead === "5", `dash shows ${dead} dead, expected 5`);
    assert(await w.page.locator("figure.chart svg").count() === 1, "no chart");
    assert(await w.page.locator("#mode").count() === 0 && await w.page.locator("#token-form").count() === 1, "the token dashboard says read-only");
    await clean(w);
  });
  await check("the Content-Security-Policy blocks an injected inline script, and the watcher reports it", async () => {
    await w.page.evaluate(() => {
      const el = document.createElement("script");
      el.textContent = "window.__inline = 1";
      document.body.append(el);
    });
    await until(() => w.problems.some((p) => p.startsWith("CSP violation")), "the CSP violation reported", 5_000);
    const ran = await w.page.evaluate(() => (window as unknown as { __inline?: number }).__inline);
    assert(ran === undefined, "the inline script ran");
    const csp = (await w.page.request.get(`${base}/`)).headers()["content-security-policy"] ?? "";
    return csp;
  });
  await check("queue page: tabs, #queue-state active, delayed jobs with their payloads as text", async () => {
    await open(w, base, "/queues/dash?state=delayed");
    assert(await textOf(w, "#queue-state") === "active", "queue state is not active");
    assert(await w.page.locator('.tabs a[aria-current="page"]').innerText() === "Delayed (2)", "the Delayed tab is not current with 2");
    const table = await textOf(w, "table#jobs");
    assert(table.includes(sent.delayed) && table.includes(sent.pipeline[0]), `the delayed jobs are not listed:\n${table}`);
    assert(table.includes(scriptPayload), "the payload's <script> is not shown as text");
    await clean(w);
  });
  await check("queue page, running tab: the sleeping job, refreshed live", async () => {
    await open(w, base, "/queues/dash_slow?state=running");
    await w.page.locator("table#jobs", { hasText: sent.running }).waitFor();
    await w.page.locator("[data-live][data-refreshed]").waitFor({ timeout: 10_000 });
    await clean(w);
  });
}

async function jobPages(s: Stack, sent: Sent, w: WatchedPage): Promise<void> {
  const base = s.admin.url;
  await check("job page of a completed job: status, and its result's <script> as text", async () => {
    await open(w, base, `/jobs?id=${sent.completed[0]}`);
    assert(await textOf(w, "#job-status") === "completed", `status ${await textOf(w, "#job-status")}`);
    const result = await textOf(w, "pre.json");
    assert(result.includes(scriptPayload), `the result is not shown as text: ${result}`);
    await clean(w);
  });
  await check("job page of a delayed pipeline step: payload and #pipeline naming the next step", async () => {
    await open(w, base, `/jobs?id=${sent.pipeline[0]}&queue=dash`);
    assert(await textOf(w, "#job-status") === "delayed", `status ${await textOf(w, "#job-status")}`);
    assert((await textOf(w, "pre.json")).includes("first step"), "the payload is missing");
    const steps = await textOf(w, "#pipeline");
    assert(steps.includes(sent.pipeline[1]) && steps.includes("dash_work"), `#pipeline says ${steps}`);
    await clean(w);
  });
  await check("job page of a dead job: the error's markup and the stack as text", async () => {
    await open(w, base, `/jobs?id=${sent.dead[0]}&queue=dash`);
    assert(await textOf(w, "#job-status") === "dead", `status ${await textOf(w, "#job-status")}`);
    const message = await textOf(w, "p.error-message");
    assert(message === `Error: upstream refused ${xssError}`, `error message: ${message}`);
    assert((await textOf(w, "pre.stack")).includes("upstream refused"), "no stack");
    assert((await textOf(w, "pre.json")).includes("<img src=x onerror="), "the payload's <img> is not shown as text");
    await clean(w);
  });
  await check("job page of the running job", async () => {
    await open(w, base, `/jobs?id=${sent.running}`);
    assert(await textOf(w, "#job-status") === "running", `status ${await textOf(w, "#job-status")}`);
    await clean(w);
  });
}

async function listPages(s: Stack, sent: Sent, w: WatchedPage): Promise<void> {
  const base = s.admin.url;
  await check("dead letters: the index, then a row per letter with its error's markup as text", async () => {
    await open(w, base, "/dead");
    await w.page.locator("table#dead-queues a", { hasText: "dash" }).click();
    await w.page.waitForURL(/\/dead\/dash$/);
    const rows = await w.page.locator("table#letters tr[data-letter]").count();
    assert(rows === 5, `${rows} letters, expected 5`);
    const text = await textOf(w, "table#letters");
    assert(text.includes(`Error: upstream refused ${xssError}`), "the error's markup is not shown as text");
    for (const id of sent.dead) assert(text.includes(id), `letter of ${id} missing`);
    await w.page.locator("#select-all").check();
    const boxes = await w.page.locator("input[name=ids]:checked").count();
    assert(boxes === 5, `select all checked ${boxes} boxes`);
    await clean(w);
  });
  await check("crons: the published cron, then its runs", async () => {
    await open(w, base, "/crons");
    await w.page.locator("table#crons a", { hasText: "dash_every_second" }).click();
    await w.page.waitForURL(/\/crons\/dash_every_second$/);
    await until(async () => {
      if (await w.page.locator("table#runs .badge.COMPLETED").count() > 0) return true;
      await w.page.reload();
    }, "a completed cron run", 15_000);
    await clean(w);
    return `${await w.page.locator("table#runs tbody tr").count()} runs`;
  });
  await check("workers: the worker with its queues, refreshed live", async () => {
    await open(w, base, "/workers");
    const row = await textOf(w, "table#workers tbody tr");
    assert(row.includes("dash_slow"), `worker row: ${row}`);
    assert(row.includes(runtime), `the row does not name ${runtime}: ${row}`);
    await w.page.locator("[data-live][data-refreshed]").waitFor({ timeout: 10_000 });
    await clean(w);
  });
  await check("actors: per-actor runs from the workers' rollups, last hour and last day", async () => {
    await open(w, base, "/actors");
    const runs = (actor: string) => w.page.locator(`table#actors tr[data-actor="${actor}"] td:nth-child(3)`);
    // Rollups land every 500 ms (DRAY_HISTORY_MS): reload until they have.
    await until(async () => {
      const [done, dead] = [await runs("dash_work").count() ? await runs("dash_work").innerText() : "0",
        await runs("dash_fail").count() ? await runs("dash_fail").innerText() : "0"];
      if (Number(done) >= 5 && Number(dead) >= 5) return true;
      await w.page.reload();
    }, "5 runs of dash_work and of dash_fail", 15_000);
    const deadCount = await textOf(w, `tr[data-actor="dash_fail"] td:nth-child(7)`);
    assert(Number(deadCount) >= 5, `dash_fail shows ${deadCount} dead`);
    await clean(w);
    await w.page.locator(".tabs a", { hasText: "Last day" }).click();
    await w.page.waitForURL(/window=day/);
    await w.page.locator(`table#actors tr[data-actor="dash_work"]`).waitFor();
    await clean(w);
  });
}

async function search(s: Stack, sent: Sent, w: WatchedPage): Promise<void> {
  await check("the header's search box finds a job by id", async () => {
    await open(w, s.admin.url, "/workers");
    await w.page.locator("header input[name=id]").fill(sent.completed[1]!);
    await w.page.getByRole("button", { name: "Find job" }).click();
    await w.page.waitForURL(/\/jobs\?id=/);
    const facts = await textOf(w, "dl#job");
    assert(facts.includes("dash_work"), `job facts: ${facts}`);
    assert(await textOf(w, "h1") === `Job ${sent.completed[1]}`, `heading ${await textOf(w, "h1")}`);
    await clean(w);
  });
}

async function live(s: Stack, w: WatchedPage): Promise<void> {
  await check("the overview's live region refreshes without a reload and shows a new job", async () => {
    await open(w, s.admin.url, "/");
    await w.page.evaluate(() => ((window as unknown as { __same: boolean }).__same = true));
    const region = w.page.locator("[data-live]");
    const delayedCell = w.page.locator(`tr[data-queue="dash"] td:nth-child(4)`);
    const before = Number(await delayedCell.innerText());
    await w.page.locator("[data-live][data-refreshed]").waitFor({ timeout: 10_000 });
    const first = await region.getAttribute("data-refreshed");
    await work.send({ note: "live" }, { delay: 600_000 });
    await w.page.waitForFunction(([was]) => document.querySelector("[data-live]")?.getAttribute("data-refreshed") !== was, [first], { timeout: 10_000 });
    await until(async () => Number(await delayedCell.innerText()) === before + 1, `delayed ${before + 1} on the page`, 10_000);
    const same = await w.page.evaluate(() => (window as unknown as { __same?: boolean }).__same);
    assert(same === true, "the page was reloaded");
    await clean(w);
  });
}

async function errorsPages(s: Stack, w: WatchedPage): Promise<void> {
  const status4xx = /status of 4\d\d/;
  await check("bad input gets a 4xx page: malformed job id, unknown job, unknown queue, bad queue name, bad state", async () => {
    const cases: Array<[string, number, string]> = [
      [`/jobs?id=${"x".repeat(201)}`, 400, "Bad request"],
      ["/jobs?id=no-such-job", 404, "Job not found"],
      ["/queues/no_such_queue", 404, "Unknown queue"],
      ["/queues/bad%20name", 400, "Bad request"],
      ["/queues/dash?state=sleeping", 400, "Bad request"],
      ["/dead/no_such_queue", 404, "Unknown queue"],
      ["/crons/no_such_cron", 404, "Unknown cron"],
    ];
    for (const [path, status, title] of cases) {
      await open(w, s.admin.url, path, status);
      assert(await textOf(w, "h1") === title, `${path}: heading ${await textOf(w, "h1")}, expected ${title}`);
      await clean(w, status4xx);
    }
  });
}

async function readOnly(s: Stack, sent: Sent, w: WatchedPage): Promise<void> {
  await check("read-only server: pause, requeue, purge and purge all are refused with a flash; Redis is unchanged", async () => {
    const before = await redisState(s);
    await open(w, s.readOnly.url, "/queues/dash");
    assert(await textOf(w, "#mode") === "read-only", "#mode does not say read-only");
    assert(await w.page.locator("p.banner").isVisible(), "no read-only banner");
    assert(await w.page.locator("#token-form").count() === 0, "a token form on the read-only page");
    await w.page.getByRole("button", { name: "Pause" }).click();
    await flash(w, "error", "Read-only");
    assert(await redisState(s) === before, "Redis changed after Pause");
    await open(w, s.readOnly.url, "/dead/dash");
    const ref = (await refOf(s, sent.dead[0]!))!;
    const row = w.page.locator(`tr[data-letter="${ref}"]`);
    await row.getByRole("button", { name: "Requeue" }).click();
    await flash(w, "error", "Read-only");
    const confirms = w.dialogs.length;
    await row.getByRole("button", { name: "Purge" }).click();
    await flash(w, "error", "Read-only");
    await w.page.getByRole("button", { name: "Purge all" }).click();
    await flash(w, "error", "Read-only");
    assert(w.dialogs.length === confirms + 2, `${w.dialogs.length - confirms} confirms for Purge and Purge all, expected 2`);
    assert(await redisState(s) === before, "Redis changed after requeue or purge");
    assert(w.actions.length === 4, `${w.actions.length} POSTs sent, expected 4`);
    await clean(w, /status of 403/);
  });
}

async function tokens(s: Stack, w: WatchedPage): Promise<void> {
  await check("the token dashboard refuses an action without the token, and with a wrong one", async () => {
    const before = await redisState(s);
    await open(w, s.admin.url, "/queues/dash");
    await w.page.getByRole("button", { name: "Pause" }).click();
    await flash(w, "error", "Enter the dashboard token first");
    await w.page.locator("#token").fill("not-the-token");
    await w.page.getByRole("button", { name: "Use token" }).click();
    await flash(w, "ok", "Token set for this tab.");
    await w.page.getByRole("button", { name: "Pause" }).click();
    await flash(w, "error", "Wrong token.");
    assert(await redisState(s) === before, "Redis changed");
    await clean(w, /status of 401/);
  });
}

/** Enters the token, then pauses and resumes; false when the token could not be entered. */
async function pauseResume(s: Stack, w: WatchedPage): Promise<boolean> {
  const paused = () => s.redis.sismember(s.keys.paused, "dash");
  const ok = await check("entering the token in the header", async () => {
    await open(w, s.admin.url, "/queues/dash");
    await w.page.locator("#token").fill(s.token);
    await w.page.getByRole("button", { name: "Use token" }).click();
    await flash(w, "ok", "Token set for this tab.");
    assert(await w.page.locator("#token").getAttribute("placeholder") === "token set", "the box does not say the token is set");
  });
  if (!ok) return false;
  await check("pause: dismissing the confirm sends nothing; accepting pauses the queue; resume", async () => {
    await open(w, s.admin.url, "/queues/dash");
    w.confirm = false;
    const sentBefore = w.actions.length;
    await w.page.getByRole("button", { name: "Pause" }).click();
    await until(() => w.dialogs.at(-1)?.startsWith("Pause dash?"), "the confirm dialog", 5_000);
    w.confirm = true;
    // The script's submit handler returned after confirm(); a round trip through the page passes it.
    await w.page.evaluate(() => 0);
    assert(w.actions.length === sentBefore && await paused() === 0, "a dismissed confirm paused the queue");
    await w.page.getByRole("button", { name: "Pause" }).click();
    await flash(w, "ok", "Paused dash.");
    assert(await textOf(w, "#queue-state") === "paused", "the page does not say paused");
    assert(await paused() === 1, "SISMEMBER paused dash is not 1 after Pause");
    await w.page.getByRole("button", { name: "Resume" }).click();
    await flash(w, "ok", "Resumed dash.");
    assert(await textOf(w, "#queue-state") === "active", "the page does not say active");
    assert(await paused() === 0, "SISMEMBER paused dash is not 0 after Resume");
    await clean(w);
  });
  return true;
}

async function deadLetterActions(s: Stack, sent: Sent, w: WatchedPage): Promise<void> {
  await check("requeue one dead letter by clicking: it leaves the DLQ and its job runs again", async () => {
    const jobId = sent.dead[0]!;
    const ref = (await refOf(s, jobId))!;
    await open(w, s.admin.url, "/dead/dash");
    await w.page.locator(`tr[data-letter="${ref}"]`).getByRole("button", { name: "Requeue" }).click();
    await flash(w, "ok", "Requeued 1 dead letter of dash.");
    assert((await s.redis.xrange(s.keys.dlq("dash"), ref, ref)).length === 0, "the letter is still in the DLQ");
    // It fails again (dash_fail always does) and is dead again under a new entry: it ran.
    await until(async () => (await s.redis.hget(s.keys.failRuns, jobId)) === "2", "a second run of the requeued job", 10_000);
    const again = await until(() => refOf(s, jobId), "the job dead again", 10_000);
    assert(again !== ref, "the same letter");
    await clean(w);
  });
  await check("purge one dead letter by clicking, after the confirm: XLEN one less", async () => {
    const jobId = sent.dead[1]!;
    const ref = (await refOf(s, jobId))!;
    const before = await s.redis.xlen(s.keys.dlq("dash"));
    await open(w, s.admin.url, "/dead/dash");
    await w.page.locator(`tr[data-letter="${ref}"]`).getByRole("button", { name: "Purge" }).click();
    await flash(w, "ok", "Purged 1 dead letter of dash.");
    assert(w.dialogs.at(-1)?.includes(jobId), `confirm said: ${w.dialogs.at(-1)}`);
    assert(await s.redis.xlen(s.keys.dlq("dash")) === before - 1, "XLEN is not one less");
    assert((await s.redis.xrange(s.keys.dlq("dash"), ref, ref)).length === 0, "the letter is still there");
    assert(await s.redis.hget(s.keys.failRuns, jobId) === "1", "a purged letter ran again");
    assert(await w.page.locator(`tr[data-letter="${ref}"]`).count() === 0, "the page still lists it");
    await clean(w);
  });
  await check("select two dead letters and purge the selection", async () => {
    const refs = await Promise.all([sent.dead[2]!, sent.dead[3]!].map(async (id) => (await refOf(s, id))!));
    const before = await s.redis.xlen(s.keys.dlq("dash"));
    await open(w, s.admin.url, "/dead/dash");
    for (const ref of refs) await w.page.locator(`tr[data-letter="${ref}"] input[type=checkbox][name=ids]`).check();
    await w.page.locator("#purge-selected").click();
    await flash(w, "ok", "Purged 2 dead letters of dash.");
    assert(await s.redis.xlen(s.keys.dlq("dash")) === before - 2, "XLEN is not two less");
    const left = await deadLetters(s);
    for (const ref of refs) assert(!left.has(ref), `${ref} is still there`);
    await clean(w);
  });
}

async function run(s: Stack, browser: Browser): Promise<void> {
  let sent: Sent | undefined;
  const settled = await check("jobs settle: 5 completed, 5 dead letters, one running, two delayed", async () => {
    sent = await sendJobs();
    await until(async () => (await s.redis.xlen(s.keys.dlq("dash"))) === 5, "5 dead letters", 20_000);
    await until(async () => (await s.redis.hexists(`{${s.prefix}:dash_slow}:running`, sent!.running)) === 1, "the slow job running", 20_000);
    await until(async () => {
      const records = await Promise.all(sent!.completed.map((id) => s.redis.get(`{${s.prefix}:dash}:job:${id}`)));
      return records.every((r) => r !== null && JSON.parse(r).status === "completed");
    }, "5 completed records", 20_000);
  });
  if (!settled || !sent) return;
  const admin = await watchedPage(browser);
  await queuePages(s, sent, admin);
  await jobPages(s, sent, admin);
  await listPages(s, sent, admin);
  await search(s, sent, admin);
  await live(s, admin);
  await errorsPages(s, admin);
  await readOnly(s, sent, await watchedPage(browser));
  await tokens(s, await watchedPage(browser));
  if (await pauseResume(s, admin)) await deadLetterActions(s, sent, admin);
  await check("no page ever had window.__xss set, an <img>, or a script of its own", async () => {
    assert(pagesChecked() > 20, `only ${pagesChecked()} pages checked`);
    return `${pagesChecked()} pages`;
  });
}

const started_ = performance.now();
try {
  const redisUp = await redisAvailable();
  if (!chromiumAvailable() && process.env.CI) {
    notOk(`Chromium at ${chromiumPath}`, "not found; CI needs it (.ci/run installs the chromium package)");
  } else if (!redisUp || !chromiumAvailable()) {
    skip(["the dashboard in Chromium"], !redisUp ? `Redis does not answer at ${REDIS_URL}` : `no Chromium at ${chromiumPath}`);
  } else {
    let stack: Stack | undefined;
    let browser: Browser | undefined;
    try {
      const up = await check(`the worker and both dashboards start through the CLI (${runtime}), and Chromium launches`, async () => {
        // Both at once, each kept as soon as it is up so that the finally below stops it either way.
        const both = await Promise.allSettled([startStack("dash").then((x) => (stack = x)), launchBrowser().then((b) => (browser = b))]);
        for (const r of both) if (r.status === "rejected") throw r.reason;
        assert(stack && browser, "unreachable");
        return `dashboards at ${stack.admin.url} and ${stack.readOnly.url}; Chromium ${browser.version()}`;
      }, 60_000);
      if (up) await run(stack!, browser!);
    } finally {
      await browser?.close();
      await stack?.stop();
    }
  }
} catch (error) {
  notOk("the browser suite itself failed", String((error as Error)?.stack ?? error));
}
console.log(`# the dashboard in Chromium, workers and dashboards on ${runtime}, in ${Math.round((performance.now() - started_) / 1000)} s`);
finish();
