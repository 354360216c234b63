import { html } from "hono/html";
import type { BrowsedJob, JobState, Page, QueueOverview } from "../../operations.ts";
import { action, brief, count, duration, page, time, type Html, type View } from "../layout.ts";

export interface QueueData {
  stats: QueueOverview;
  state: JobState;
  jobs: Page<BrowsedJob>;
  cursor?: string;
}

const tabs: Array<[JobState, string]> = [["ready", "Ready"], ["running", "Running"], ["delayed", "Delayed"], ["dead", "Dead"]];

/** One queue: its jobs in one state, a page at a time, and pause/resume. */
export function queuePage(view: View, data: QueueData, now = Date.now()): Html {
  const { stats, state } = data;
  const base = `${view.base}/queues/${encodeURIComponent(stats.queue)}`;
  const counts: Record<JobState, number> = { ready: stats.ready, running: stats.running, delayed: stats.delayed, dead: stats.dead };
  const path = `/api/queues/${encodeURIComponent(stats.queue)}`;
  return page(view, `Queue ${stats.queue}`, html`<div class="actions">
${stats.paused
    ? html`<span class="badge paused" id="queue-state">paused</span> ${action(view, `${path}/resume`, "Resume")}`
    : html`<span class="badge ready" id="queue-state">active</span> ${action(view, `${path}/pause`, "Pause", { confirm: `Pause ${stats.queue}? Workers stop taking its jobs within a second.` })}`}
</div>
<nav class="tabs">${tabs.map(([s, label]) => html`<a href="${s === "dead" ? `${view.base}/dead/${encodeURIComponent(stats.queue)}` : `${base}?state=${s}`}"${s === state ? html` aria-current="page"` : ""}>${label} (${count(counts[s])})</a>`)}</nav>
${state === "running" && !data.cursor ? html`<div data-live="2000">${jobTable(view, data, now)}</div>` : jobTable(view, data, now)}`);
}

export function jobTable(view: View, { state, jobs, stats }: QueueData, now = Date.now()): Html {
  const head: Record<JobState, Html> = {
    ready: html`<th>Job</th><th>Actor</th><th class="num">Priority</th><th class="num">Retries</th><th>Sent</th><th>Payload</th>`,
    running: html`<th>Job</th><th>Actor</th><th>Worker</th><th class="num">Running for</th><th class="num">Deliveries</th><th>Payload</th>`,
    delayed: html`<th>Job</th><th>Actor</th><th>Due</th><th class="num">Retries</th><th>Sent</th><th>Payload</th>`,
    dead: html`<th>Job</th><th>Actor</th><th>Died</th><th class="num">Retries</th><th>Error</th><th>Payload</th>`,
  };
  const next = jobs.next ? `${view.base}/queues/${encodeURIComponent(stats.queue)}?state=${state}&cursor=${encodeURIComponent(jobs.next)}` : undefined;
  return html`<table id="jobs" data-state="${state}">
<thead><tr>${head[state]}</tr></thead>
<tbody>${jobs.items.length === 0 ? html`<tr><td colspan="6" class="muted">No ${state} jobs.</td></tr>` : jobs.items.map((j) => jobRow(view, j, now))}</tbody>
</table>
<div class="pager">${next ? html`<a href="${next}" id="next-page">Next page</a>` : html`<span class="muted">End of list.</span>`}</div>`;
}

function jobRow(view: View, j: BrowsedJob, now: number): Html {
  const m = "raw" in j.message ? undefined : j.message;
  const link = html`<a href="${view.base}/jobs?id=${encodeURIComponent(j.id)}&queue=${encodeURIComponent(j.queue)}"><code>${j.id}</code></a>`;
  const payload = m ? html`<code>${brief(m.payload)}</code>` : html`<span class="fail">undecodable:</span> <code>${brief(j.message)}</code>`;
  const actor = m?.actor ?? "?";
  switch (j.state) {
    case "ready":
      return html`<tr><td>${link}</td><td>${actor}</td><td class="num">${m?.priority ?? 0}</td><td class="num">${j.retries}</td><td>${time(m?.sentAt, now)}</td><td>${payload}</td></tr>`;
    case "running":
      return html`<tr><td>${link}</td><td>${actor}</td><td><code>${j.consumer ?? "?"}</code></td><td class="num">${j.startedAt === undefined ? html`<span class="muted" title="the start of jobs without a record is not kept">–</span>` : duration(now - j.startedAt)}</td><td class="num">${j.deliveries ?? 1}</td><td>${payload}</td></tr>`;
    case "delayed":
      return html`<tr><td>${link}</td><td>${actor}</td><td>${time(j.dueAt, now)}</td><td class="num">${j.retries}</td><td>${time(m?.sentAt, now)}</td><td>${payload}</td></tr>`;
    case "dead":
      return html`<tr><td>${link}</td><td>${actor}</td><td>${time(j.deadAt, now)}</td><td class="num">${j.retries}</td><td class="fail">${j.error ? `${j.error.name}: ${j.error.message}` : ""}</td><td>${payload}</td></tr>`;
  }
}
