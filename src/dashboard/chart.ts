/**
 * The overview's chart: jobs per minute over the last hour, completed and failed stacked, as inline
 * SVG drawn on the server. No chart library and no script: only numbers go into the markup, and the
 * page's Content-Security-Policy allows no inline styles (colours come from classes in the CSS).
 */
import { html } from "hono/html";
import type { Html } from "./layout.ts";

export interface MinutePoint {
  /** Start of the minute, ms since epoch. */
  at: number;
  completed: number;
  /** Runs that failed: retried, dead-lettered or refused. */
  failed: number;
}

const width = 1200;
const height = 200;
const pad = { left: 44, right: 8, top: 10, bottom: 22 };

export function minuteChart(points: MinutePoint[], label: string): Html {
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const peak = Math.max(1, ...points.map((p) => p.completed + p.failed));
  const scale = niceCeiling(peak);
  const slot = plotW / Math.max(1, points.length);
  const barW = Math.max(1, slot - 2);
  const y = (v: number) => pad.top + plotH - (v / scale) * plotH;
  const total = points.reduce((sum, p) => ({ completed: sum.completed + p.completed, failed: sum.failed + p.failed }), { completed: 0, failed: 0 });
  const bars = points.map((p, i) => {
    const x = pad.left + i * slot + 1;
    const okTop = y(p.completed);
    const failTop = y(p.completed + p.failed);
    const minute = new Date(p.at).toISOString().slice(11, 16);
    return html`<g><title>${minute} UTC: ${p.completed} completed, ${p.failed} failed</title>${
      p.completed > 0 ? html`<rect class="bar-ok" x="${x.toFixed(1)}" y="${okTop.toFixed(1)}" width="${barW.toFixed(1)}" height="${(pad.top + plotH - okTop).toFixed(1)}"></rect>` : ""
    }${
      p.failed > 0 ? html`<rect class="bar-fail" x="${x.toFixed(1)}" y="${failTop.toFixed(1)}" width="${barW.toFixed(1)}" height="${(okTop - failTop).toFixed(1)}"></rect>` : ""
    }</g>`;
  });
  const first = points[0];
  const last = points[points.length - 1];
  return html`<figure class="chart">
<svg viewBox="0 0 ${width} ${height}" role="img" aria-label="${label}">
<line class="axis" x1="${pad.left}" y1="${pad.top + plotH}" x2="${width - pad.right}" y2="${pad.top + plotH}"></line>
<text class="tick" x="${pad.left - 6}" y="${pad.top + 8}" text-anchor="end">${scale}</text>
<text class="tick" x="${pad.left - 6}" y="${pad.top + plotH}" text-anchor="end">0</text>
${bars}
${first ? html`<text class="tick" x="${pad.left}" y="${height - 6}">${new Date(first.at).toISOString().slice(11, 16)}</text>` : ""}
${last ? html`<text class="tick" x="${width - pad.right}" y="${height - 6}" text-anchor="end">${new Date(last.at).toISOString().slice(11, 16)} UTC</text>` : ""}
</svg>
<figcaption>${label}: <span class="ok">${total.completed} completed</span>, <span class="fail">${total.failed} failed</span></figcaption>
</figure>`;
}

/** 1, 2, 5, 10, 20, 50, ...: an axis top at or above `n`. */
function niceCeiling(n: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= n) return step * magnitude;
  return 10 * magnitude;
}
