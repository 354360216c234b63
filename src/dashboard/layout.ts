/**
 * The page shell and the small formatters every page uses. Everything is rendered with Hono's `html`
 * tag, which escapes each interpolated value: payloads, errors, stacks and names from Redis are text,
 * never markup. `raw` is not used on anything read from Redis.
 */
import { html } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";

export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** What every page needs to know about where it is served and whether it may change anything. */
export interface View {
  /** Where the dashboard is mounted ("" at the root); every link starts with it. */
  base: string;
  readOnly: boolean;
  /** Where the reader is now, for the navigation's highlight. */
  section: "overview" | "queues" | "jobs" | "dead" | "crons" | "workers" | "actors";
}

const sections: Array<[View["section"], string, string]> = [
  ["overview", "/", "Overview"],
  ["dead", "/dead", "Dead letters"],
  ["actors", "/actors", "Actors"],
  ["crons", "/crons", "Crons"],
  ["workers", "/workers", "Workers"],
];

export function page(view: View, title: string, body: Html): Html {
  const b = view.base;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · dray</title>
<link rel="stylesheet" href="${b}/assets/dashboard.css">
<link rel="icon" href="${b}/assets/icon.svg" type="image/svg+xml">
<script src="${b}/assets/dashboard.js" defer></script>
</head>
<body data-base="${b}" data-read-only="${view.readOnly ? "1" : "0"}">
<header>
  <a class="brand" href="${b}/">dray</a>
  <nav>${sections.map(([s, path, label]) => html`<a href="${b}${path}"${s === view.section ? html` aria-current="page"` : ""}>${label}</a>`)}</nav>
  <form class="search" method="get" action="${b}/jobs" role="search">
    <input name="id" placeholder="job id" aria-label="job id" maxlength="200" required>
    <button type="submit">Find job</button>
  </form>
  ${view.readOnly
    ? html`<span class="mode" id="mode">read-only</span>`
    : html`<form class="token" id="token-form"><input type="password" id="token" placeholder="token" aria-label="dashboard token" autocomplete="off"><button type="submit">Use token</button></form>`}
</header>
${view.readOnly ? html`<p class="banner">Read-only: this dashboard has no token, so pause, resume, requeue and purge are refused. Start it with DRAY_DASHBOARD_TOKEN set to allow them.</p>` : ""}
<p id="flash" role="status" hidden></p>
<main>
<h1>${title}</h1>
${body}
</main>
</body>
</html>`;
}

/** A page for a request that cannot be answered: the status, and one line saying why. */
export function problem(view: View, title: string, detail: string): Html {
  return page(view, title, html`<p class="problem">${detail}</p><p><a href="${view.base}/">Back to the overview</a></p>`);
}

/** A form whose submit the page's script sends with the token (see assets.ts). */
export function action(view: View, path: string, label: string, o: { fields?: Record<string, string>; confirm?: string; danger?: boolean } = {}): Html {
  const fields = Object.entries(o.fields ?? {});
  return html`<form class="action" method="post" action="${view.base}${path}"${o.confirm ? html` data-confirm="${o.confirm}"` : ""}>${
    fields.map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`)
  }<button type="submit"${o.danger ? html` class="danger"` : ""}>${label}</button></form>`;
}

export function time(ms: number | undefined, now = Date.now()): Html {
  if (ms === undefined || !Number.isFinite(ms)) return html`<span class="muted">–</span>`;
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}" title="${iso}">${relative(ms - now)}</time>`;
}

/** "in 3 s", "5 min ago". */
export function relative(deltaMs: number): string {
  const span = duration(Math.abs(deltaMs));
  if (Math.abs(deltaMs) < 1_000) return "now";
  return deltaMs > 0 ? `in ${span}` : `${span} ago`;
}

export function duration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1_000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1_000)} s`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)} h ${Math.round((ms % 3_600_000) / 60_000)} min`;
  return `${Math.floor(ms / 86_400_000)} d ${Math.round((ms % 86_400_000) / 3_600_000)} h`;
}

/** Largest JSON shown in full; a bigger payload or result is cut, saying how big it was. */
export const previewLimit = 16_384;

/** A value as indented JSON, cut to `limit` characters. */
export function json(value: unknown, limit = previewLimit): Html {
  let text: string;
  try {
    text = JSON.stringify(value, null, 2) ?? String(value);
  } catch {
    text = String(value);
  }
  if (text.length <= limit) return html`<pre class="json">${text}</pre>`;
  return html`<pre class="json">${text.slice(0, limit)}</pre><p class="muted">… cut at ${limit} of ${text.length} characters</p>`;
}

/** A one-line preview of a payload for a table cell. */
export function brief(value: unknown, limit = 120): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

export function count(n: number): string {
  return n.toLocaleString("en-US");
}
