import { html } from "hono/html";
import type { WorkerInfo } from "../../operations.ts";
import { count, page, time, type Html, type View } from "../layout.ts";

/** The live workers, as their heartbeats last told. */
export function workersPage(view: View, workers: WorkerInfo[], now = Date.now()): Html {
  return page(view, "Workers", html`<div data-live="2000">${workersLive(workers, now)}</div>`);
}

export function workersLive(workers: WorkerInfo[], now = Date.now()): Html {
  return html`<table id="workers">
<thead><tr><th>Worker</th><th>Host</th><th>Runtime</th><th>Queues</th><th class="num">Threads</th><th class="num">Concurrency</th><th class="num">Running</th><th class="num">Processed</th><th class="num">Failed</th><th>Started</th><th>Last heartbeat</th></tr></thead>
<tbody>${workers.length === 0
    ? html`<tr><td colspan="11" class="muted">No live workers.</td></tr>`
    : workers.map((w) => html`<tr>
<td><code>${w.id}</code></td><td>${w.host} <span class="muted">pid ${w.pid}</span></td><td>${w.runtime} <span class="muted">${w.isolation}</span></td>
<td>${w.queues.join(", ")}</td><td class="num">${w.threads}</td><td class="num">${w.concurrency}</td>
<td class="num">${count(w.running)}</td><td class="num">${count(w.processed)}</td><td class="num">${count(w.failed)}</td>
<td>${time(w.startedAt, now)}</td><td>${time(w.beatAt, now)}</td>
</tr>`)}</tbody>
</table>`;
}
