/**
 * An SVG chart of processing throughput against concurrency (log scale), one line per thread count,
 * with the reference systems as dashed horizontal lines. Hand-written: no dependency.
 */
import type { RunResult } from "./runner.ts";

const W = 880;
const H = 440;
const M = { left: 80, right: 320, top: 40, bottom: 50 };
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

export function chartSvg(title: string, cells: RunResult[], references: Array<{ label: string; jobsPerSec: number }>): string {
  const ok = cells.filter((c) => c.status === "ok" && c.concurrency !== undefined);
  const concs = [...new Set(ok.map((c) => c.concurrency!))].sort((a, b) => a - b);
  const maxY = niceCeil(Math.max(1, ...ok.map((c) => c.processing.jobsPerSec), ...references.map((r) => r.jobsPerSec)));
  const lo = Math.log2(Math.max(1, concs[0] ?? 1));
  const hi = Math.max(lo + 1, Math.log2(concs[concs.length - 1] ?? 2));
  const x = (c: number) => M.left + ((Math.log2(Math.max(1, c)) - lo) / (hi - lo)) * (W - M.left - M.right);
  const y = (v: number) => H - M.bottom - (v / maxY) * (H - M.top - M.bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - M.right / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = (maxY * i) / 5;
    parts.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
      `<text x="${M.left - 6}" y="${y(v) + 4}" text-anchor="end">${Math.round(v).toLocaleString("en-US")}</text>`);
  }
  for (const c of concs) {
    parts.push(`<line x1="${x(c)}" x2="${x(c)}" y1="${M.top}" y2="${H - M.bottom}" stroke="#eee"/>`,
      `<text x="${x(c)}" y="${H - M.bottom + 16}" text-anchor="middle">${c}</text>`);
  }
  parts.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - 12}" text-anchor="middle">concurrency (log scale)</text>`,
    `<text transform="translate(18 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">jobs/s processed</text>`,
    `<rect x="${M.left}" y="${M.top}" width="${W - M.left - M.right}" height="${H - M.top - M.bottom}" fill="none" stroke="#888"/>`);
  const legend: string[] = [];
  const threadCounts = [...new Set(ok.map((c) => c.threads ?? 0))].sort((a, b) => a - b);
  threadCounts.forEach((t, i) => {
    const color = COLORS[i % COLORS.length]!;
    const pts = ok.filter((c) => (c.threads ?? 0) === t).sort((a, b) => a.concurrency! - b.concurrency!);
    const d = pts.map((c) => `${x(c.concurrency!).toFixed(1)},${y(c.processing.jobsPerSec).toFixed(1)}`).join(" ");
    parts.push(`<polyline points="${d}" fill="none" stroke="${color}" stroke-width="2"/>`,
      ...pts.map((c) => `<circle cx="${x(c.concurrency!).toFixed(1)}" cy="${y(c.processing.jobsPerSec).toFixed(1)}" r="3" fill="${color}"/>`));
    legend.push(swatch(legend.length, color, `dray --threads ${t}`, false));
  });
  references.forEach((r, i) => {
    const color = COLORS[(threadCounts.length + i) % COLORS.length]!;
    parts.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y(r.jobsPerSec)}" y2="${y(r.jobsPerSec)}" stroke="${color}" stroke-dasharray="6 4" stroke-width="1.5"/>`);
    legend.push(swatch(legend.length, color, `${r.label} (${Math.round(r.jobsPerSec).toLocaleString("en-US")}/s)`, true));
  });
  parts.push(...legend, "</svg>");
  return parts.join("\n") + "\n";
}

function swatch(row: number, color: string, label: string, dashed: boolean): string {
  const lx = W - M.right + 14;
  const ly = M.top + 10 + row * 20;
  return `<line x1="${lx}" x2="${lx + 22}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ""}/>` +
    `<text x="${lx + 28}" y="${ly + 4}">${esc(label)}</text>`;
}

/** 1, 2 or 5 times a power of ten, at or above `v`. */
function niceCeil(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}
