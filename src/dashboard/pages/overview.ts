import { html } from "hono/html";
import type { QueueOverview } from "../../operations.ts";
import { minuteChart, type MinutePoint } from "../chart.ts";
import { count, page, type Html, type View } from "../layout.ts";

export interface OverviewData {
  queues: QueueOverview[];
  minutes: MinutePoint[];
}

/** The page a team keeps open: every queue's counts and the last hour's throughput, refreshed live. */
export function overviewPage(view: View, data: OverviewData): Html {
  return page(view, "Overview", html`<div data-live="2000">${overviewLive(view, data)}</div>`);
}

export function overviewLive(view: View, { queues, minutes }: OverviewData): Html {
  const q = (name: string) => `${view.base}/queues/${encodeURIComponent(name)}`;
  return html`${minuteChart(minutes, "Jobs per minute, last hour, all queues")}
<table id="queues">
<thead><tr><th>Queue</th><th class="num">Ready</th><th class="num">Running</th><th class="num">Delayed</th><th class="num">Dead</th><th>State</th></tr></thead>
<tbody>${queues.length === 0
    ? html`<tr><td colspan="6" class="muted">No queues yet: a worker declares its queues when it starts.</td></tr>`
    : queues.map((s) => html`<tr data-queue="${s.queue}">
<td><a href="${q(s.queue)}">${s.queue}</a></td>
<td class="num"><a href="${q(s.queue)}?state=ready">${count(s.ready)}</a></td>
<td class="num"><a href="${q(s.queue)}?state=running">${count(s.running)}</a></td>
<td class="num"><a href="${q(s.queue)}?state=delayed">${count(s.delayed)}</a></td>
<td class="num"><a href="${view.base}/dead/${encodeURIComponent(s.queue)}">${count(s.dead)}</a></td>
<td>${s.paused ? html`<span class="badge paused">paused</span>` : html`<span class="badge ready">active</span>`}</td>
</tr>`)}</tbody>
</table>`;
}
