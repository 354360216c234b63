import { html } from "hono/html";
import type { BrowsedJob, Page, QueueOverview } from "../../operations.ts";
import { action, brief, count, page, time, type Html, type View } from "../layout.ts";

/** Which queues have dead letters. */
export function deadIndexPage(view: View, queues: QueueOverview[]): Html {
  const withDead = queues.filter((q) => q.dead > 0);
  return page(view, "Dead letters", html`<table id="dead-queues">
<thead><tr><th>Queue</th><th class="num">Dead letters</th></tr></thead>
<tbody>${withDead.length === 0
    ? html`<tr><td colspan="2" class="muted">No dead letters in any queue.</td></tr>`
    : withDead.map((q) => html`<tr><td><a href="${view.base}/dead/${encodeURIComponent(q.queue)}">${q.queue}</a></td><td class="num">${count(q.dead)}</td></tr>`)}</tbody>
</table>`);
}

/** A queue's dead letters, newest first: why each died, and requeue or purge per letter, per selection, or all. */
export function deadPage(view: View, queue: string, letters: Page<BrowsedJob>, total: number, now = Date.now()): Html {
  const api = `${view.base}/api/dead/${encodeURIComponent(queue)}`;
  const next = letters.next ? `${view.base}/dead/${encodeURIComponent(queue)}?cursor=${encodeURIComponent(letters.next)}` : undefined;
  return page(view, `Dead letters of ${queue}`, html`<p><a href="${view.base}/queues/${encodeURIComponent(queue)}">Queue ${queue}</a> · ${count(total)} dead</p>
<div class="actions">
${action(view, `/api/dead/${encodeURIComponent(queue)}/requeue`, `Requeue all`, { fields: { all: "1" }, confirm: `Requeue all ${total} dead letters of ${queue}?` })}
${action(view, `/api/dead/${encodeURIComponent(queue)}/purge`, `Purge all`, { fields: { all: "1" }, confirm: `Delete all ${total} dead letters of ${queue} for good?`, danger: true })}
</div>
<form id="bulk" class="action" method="post" action="${api}/requeue">
<div class="actions">
<button type="submit" formaction="${api}/requeue" id="requeue-selected">Requeue selected</button>
<button type="submit" formaction="${api}/purge" class="danger" id="purge-selected" data-confirm="Delete the selected dead letters for good?">Purge selected</button>
</div>
</form>
<table id="letters">
<thead><tr><th><input type="checkbox" id="select-all" aria-label="select all"></th><th>Job</th><th>Actor</th><th>Died</th><th class="num">Retries</th><th>Reason</th><th>Payload</th><th></th></tr></thead>
<tbody>${letters.items.length === 0 ? html`<tr><td colspan="8" class="muted">No dead letters.</td></tr>` : letters.items.map((l) => {
    const m = "raw" in l.message ? undefined : l.message;
    return html`<tr data-letter="${l.ref}">
<td><input type="checkbox" name="ids" value="${l.ref}" form="bulk" aria-label="select ${l.id}"></td>
<td><a href="${view.base}/jobs?id=${encodeURIComponent(l.id)}&queue=${encodeURIComponent(queue)}"><code>${l.id}</code></a></td>
<td>${m?.actor ?? "?"}</td><td>${time(l.deadAt, now)}</td><td class="num">${l.retries}</td>
<td class="fail">${l.error ? `${l.error.name}: ${l.error.message}` : ""}</td>
<td><code>${brief(m ? m.payload : l.message)}</code></td>
<td>${action(view, `/api/dead/${encodeURIComponent(queue)}/requeue`, "Requeue", { fields: { ids: l.ref } })}
${action(view, `/api/dead/${encodeURIComponent(queue)}/purge`, "Purge", { fields: { ids: l.ref }, danger: true, confirm: `Delete the dead letter of ${l.id} for good?` })}</td>
</tr>`;
  })}</tbody>
</table>
<div class="pager">${next ? html`<a href="${next}" id="next-page">Next page</a>` : html`<span class="muted">End of list.</span>`}</div>`);
}
