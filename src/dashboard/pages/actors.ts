import { html } from "hono/html";
import type { ActorStats } from "../../operations.ts";
import { count, duration, page, type Html, type View } from "../layout.ts";

export type StatsWindow = "hour" | "day";

/**
 * Per actor, from the rollups every worker writes: runs, failures, retries, time-limit kills, and
 * how long runs took and waited, over the last hour or day.
 */
export function actorsPage(view: View, window: StatsWindow, actors: ActorStats[]): Html {
  const tab = (w: StatsWindow, label: string) => html`<a href="${view.base}/actors?window=${w}"${w === window ? html` aria-current="page"` : ""}>${label}</a>`;
  return page(view, "Actors", html`<nav class="tabs">${tab("hour", "Last hour")}${tab("day", "Last day")}</nav>
<table id="actors">
<thead><tr><th>Actor</th><th>Queue</th><th class="num">Runs</th><th class="num">Completed</th><th class="num">Failures</th><th class="num">Retries</th><th class="num">Dead</th><th class="num">Time-limit kills</th>
<th class="num">Duration p50</th><th class="num">p95</th><th class="num">p99</th><th class="num">Wait p50</th><th class="num">p95</th></tr></thead>
<tbody>${actors.length === 0
    ? html`<tr><td colspan="13" class="muted">No runs in this window.</td></tr>`
    : actors.map((a) => html`<tr data-actor="${a.actor}">
<td>${a.actor}</td><td><a href="${view.base}/queues/${encodeURIComponent(a.queue)}">${a.queue}</a></td>
<td class="num">${count(a.runs)}</td><td class="num">${count(a.completed)}</td><td class="num${a.failures > 0 ? " fail" : ""}">${count(a.failures)}</td>
<td class="num">${count(a.retried)}</td><td class="num">${count(a.dead)}</td><td class="num${a.kills > 0 ? " fail" : ""}">${count(a.kills)}</td>
<td class="num">${duration(a.duration?.p50)}</td><td class="num">${duration(a.duration?.p95)}</td><td class="num">${duration(a.duration?.p99)}</td>
<td class="num">${duration(a.wait?.p50)}</td><td class="num">${duration(a.wait?.p95)}</td>
</tr>`)}</tbody>
</table>
<p class="muted">Durations are of completed runs; waits run from a job becoming ready (sent, due or retried) to its start. Percentiles are estimated from buckets about 19% wide.</p>`);
}
