import { html } from "hono/html";
import type { CronOverview, CronRun } from "../../operations.ts";
import { brief, duration, page, time, type Html, type View } from "../layout.ts";

/** Every published cron: schedule, next and last run. */
export function cronsPage(view: View, crons: CronOverview[], now = Date.now()): Html {
  return page(view, "Crons", html`<table id="crons">
<thead><tr><th>Cron</th><th>Schedule</th><th>Timezone</th><th>Actor</th><th>Queue</th><th>Next run</th><th>Last run</th><th>Status</th><th>Duration</th></tr></thead>
<tbody>${crons.length === 0
    ? html`<tr><td colspan="9" class="muted">No crons published: workers and schedulers publish theirs when they start.</td></tr>`
    : crons.map((c) => html`<tr>
<td><a href="${view.base}/crons/${encodeURIComponent(c.name)}">${c.name}</a></td><td><code>${c.expression}</code></td><td>${c.timezone ?? "UTC"}</td>
<td>${c.actor}</td><td>${c.queue}</td><td>${time(c.nextRun, now)}</td><td>${time(c.lastRun?.tick, now)}</td>
<td>${c.lastRun ? html`<span class="badge ${c.lastRun.status}">${c.lastRun.status}</span>` : html`<span class="muted">never ran</span>`}</td>
<td class="num">${duration(c.lastRun?.duration)}</td>
</tr>`)}</tbody>
</table>`);
}

/** One cron's runs, newest first, with their durations and outcomes. */
export function cronPage(view: View, name: string, runs: CronRun[], now = Date.now()): Html {
  return page(view, `Cron ${name}`, html`<p><a href="${view.base}/crons">All crons</a></p>
<table id="runs">
<thead><tr><th>Tick</th><th>Status</th><th class="num">Attempt</th><th>Started</th><th class="num">Duration</th><th>Job</th><th>Result or error</th></tr></thead>
<tbody>${runs.length === 0
    ? html`<tr><td colspan="7" class="muted">No runs yet.</td></tr>`
    : runs.map((r) => html`<tr>
<td>${time(r.tick, now)}</td><td><span class="badge ${r.status}">${r.status}</span></td><td class="num">${r.attempt}</td>
<td>${time(r.startedAt, now)}</td><td class="num">${duration(r.duration)}</td>
<td><a href="${view.base}/jobs?id=${encodeURIComponent(r.jobId)}"><code>${r.jobId}</code></a></td>
<td>${r.error ? html`<span class="fail">${r.error.name}: ${r.error.message}</span>` : r.result === undefined ? "" : html`<code>${brief(r.result)}</code>`}</td>
</tr>`)}</tbody>
</table>`);
}
