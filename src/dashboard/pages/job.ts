import { html } from "hono/html";
import type { SerializedError } from "../../errors.ts";
import type { Message } from "../../message.ts";
import type { JobDetail } from "../../operations.ts";
import { json, page, time, type Html, type View } from "../layout.ts";

/** One job: where it is, its times, payload, result or error with its stack, and what it belongs to. */
export function jobPage(view: View, detail: JobDetail, now = Date.now()): Html {
  const { record, found } = detail;
  const message = found && !("raw" in found.message) ? found.message : undefined;
  const status = record?.status ?? found?.state ?? "unknown";
  const error = record?.error ?? found?.error;
  const link = (id: string, queue: string) => html`<a href="${view.base}/jobs?id=${encodeURIComponent(id)}&queue=${encodeURIComponent(queue)}"><code>${id}</code></a>`;
  return page(view, `Job ${detail.id}`, html`<dl class="facts" id="job">
<dt>Status</dt><dd><span class="badge ${status}" id="job-status">${status}</span>${found && record && found.state !== record.status ? html` <span class="muted">(message ${found.state})</span>` : ""}</dd>
<dt>Queue</dt><dd><a href="${view.base}/queues/${encodeURIComponent(detail.queue)}">${detail.queue}</a></dd>
<dt>Actor</dt><dd>${record?.actor ?? message?.actor ?? "?"}</dd>
<dt>Attempts</dt><dd>${record?.attempts ?? (found ? found.retries + (found.state === "running" ? 1 : 0) : "?")}</dd>
<dt>Enqueued</dt><dd>${time(record?.enqueuedAt ?? message?.sentAt, now)}</dd>
${record?.dueAt !== undefined || found?.dueAt !== undefined ? html`<dt>Due</dt><dd>${time(found?.dueAt ?? record?.dueAt, now)}</dd>` : ""}
<dt>Started</dt><dd>${time(record?.startedAt ?? found?.startedAt, now)}</dd>
<dt>Finished</dt><dd>${time(record?.finishedAt ?? found?.deadAt, now)}</dd>
${found?.consumer ? html`<dt>Worker</dt><dd><code>${found.consumer}</code></dd>` : ""}
${message?.cron ? html`<dt>Cron</dt><dd><a href="${view.base}/crons/${encodeURIComponent(message.cron.name)}">${message.cron.name}</a>, tick ${time(message.cron.tick, now)}</dd>` : ""}
${message?.group ? html`<dt>Group</dt><dd><code>${message.group.id}</code> <span class="muted">(${message.group.size} jobs)</span></dd>` : ""}
</dl>
${message?.pipe ? pipeline(message, link) : ""}
<h2>Payload</h2>
${found ? ("raw" in found.message ? html`<p class="fail">The entry cannot be decoded; its raw body:</p>${json(found.message.raw)}` : json(found.message.payload))
    : html`<p class="muted">Not in the queue any more: a message is kept only while its job waits, runs or is dead.</p>`}
${record && "result" in record ? html`<h2>Result</h2>${json(record.result)}` : ""}
${error ? html`<h2>Error</h2>${errorBlock(error)}` : ""}`);
}

function pipeline(message: Message, link: (id: string, queue: string) => Html): Html {
  return html`<h2>Pipeline: steps after this one</h2><ol id="pipeline">${
    (message.pipe ?? []).map((step) => html`<li>${step.actor} on ${step.queue}: ${link(step.id, step.queue)}</li>`)
  }</ol>`;
}

function errorBlock(e: SerializedError, depth = 0): Html {
  return html`<p class="fail error-message">${e.name}: ${e.message}</p>
${e.stack ? html`<pre class="stack">${e.stack.slice(0, 16_384)}</pre>` : ""}
${e.cause && depth < 5 ? html`<p class="muted">Caused by:</p>${errorBlock(e.cause, depth + 1)}` : ""}`;
}

/** The search box's answer when no job has that id. */
export function jobNotFound(view: View, id: string): Html {
  return page(view, "Job not found", html`<p class="problem">No job <code>${id}</code>: no record (its actor keeps none, or it expired) and no message in any queue.</p>`);
}
