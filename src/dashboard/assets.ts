/**
 * The page's stylesheet, script and icon, served from the dashboard itself (`/assets/…`) as plain
 * CSS, JS and SVG: nothing to build, nothing fetched from elsewhere, and the Content-Security-Policy
 * can allow scripts and styles from 'self' only. The icon is there because without one every browser
 * asks for /favicon.ico (outside the basePath, too) and logs the 404 as a console error. The script
 * does three things: keeps the token the user typed (in sessionStorage, never a cookie, so another
 * site's form cannot post with it), sends the action forms with it, and refreshes the page's live
 * region.
 */

export const script = `"use strict";
(() => {
  const key = "dray-dashboard-token";
  const flash = document.getElementById("flash");
  const show = (text, kind) => {
    flash.textContent = text;
    flash.className = kind;
    flash.hidden = false;
  };
  const told = sessionStorage.getItem("dray-flash");
  if (told) {
    sessionStorage.removeItem("dray-flash");
    try { const { text, kind } = JSON.parse(told); show(String(text), kind === "ok" ? "ok" : "error"); } catch {}
  }

  const tokenForm = document.getElementById("token-form");
  if (tokenForm) {
    const input = document.getElementById("token");
    if (sessionStorage.getItem(key)) input.placeholder = "token set";
    tokenForm.addEventListener("submit", (event) => {
      event.preventDefault();
      if (input.value) sessionStorage.setItem(key, input.value);
      else sessionStorage.removeItem(key);
      input.value = "";
      input.placeholder = sessionStorage.getItem(key) ? "token set" : "token";
      show(sessionStorage.getItem(key) ? "Token set for this tab." : "Token cleared.", "ok");
    });
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") return;
    event.preventDefault();
    const submitter = event.submitter instanceof HTMLButtonElement ? event.submitter : null;
    const question = (submitter && submitter.dataset.confirm) || form.dataset.confirm;
    if (question && !confirm(question)) return;
    const target = submitter && submitter.hasAttribute("formaction") ? submitter.formAction : form.action;
    const body = new URLSearchParams(new FormData(form, submitter));
    const headers = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
    const token = sessionStorage.getItem(key);
    if (token) headers.authorization = "Bearer " + token;
    try {
      const res = await fetch(target, { method: "POST", headers, body });
      const reply = await res.json().catch(() => ({}));
      if (res.ok) {
        sessionStorage.setItem("dray-flash", JSON.stringify({ text: reply.message || "Done.", kind: "ok" }));
        location.reload();
      } else {
        show(reply.error || "Refused (" + res.status + ").", "error");
      }
    } catch (error) {
      show("The dashboard did not answer: " + error, "error");
    }
  });

  // The live region is fetched again as a fragment (one Redis round trip on the server), at most
  // once a second, and not while the tab is hidden.
  const live = document.querySelector("[data-live]");
  if (live) {
    const every = Math.max(1000, Number(live.dataset.live) || 2000);
    const refresh = async () => {
      if (!document.hidden) {
        try {
          const url = new URL(location.href);
          url.searchParams.set("fragment", "live");
          const res = await fetch(url, { headers: { accept: "text/html" } });
          if (res.ok) {
            live.innerHTML = await res.text();
            live.dataset.refreshed = String(Date.now());
            live.classList.remove("stale");
          } else {
            live.classList.add("stale");
          }
        } catch {
          live.classList.add("stale");
        }
      }
      setTimeout(refresh, every);
    };
    setTimeout(refresh, every);
  }

  const all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll("input[name=ids]")) box.checked = all.checked;
    });
  }
})();
`;

export const stylesheet = `:root {
  --fg: #1d2330; --muted: #6b7385; --bg: #f7f8fa; --card: #fff; --line: #e2e5eb;
  --accent: #3559c7; --ok: #2f8f5b; --fail: #c23b3b; --warn: #b7791f;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg);
}
body { margin: 0; }
header { display: flex; flex-wrap: wrap; gap: 12px 20px; align-items: center; padding: 10px 24px; background: #1d2330; color: #fff; }
header a { color: #cfd6e6; text-decoration: none; }
header a[aria-current=page], header a:hover { color: #fff; }
header nav { display: flex; gap: 16px; }
.brand { font-weight: 700; font-size: 17px; color: #fff; margin-right: 8px; }
header form { display: flex; gap: 6px; }
header form.search { margin-left: auto; }
header input { padding: 4px 8px; border-radius: 4px; border: 1px solid #4a5366; background: #2a3142; color: #fff; }
.mode { padding: 2px 8px; border-radius: 10px; background: var(--warn); color: #fff; font-size: 12px; }
.banner { margin: 0; padding: 8px 24px; background: #fff4df; color: #6b4b0f; border-bottom: 1px solid #f0dcb0; }
main { padding: 8px 24px 40px; max-width: 1280px; }
h1 { font-size: 20px; margin: 16px 0 12px; }
h2 { font-size: 16px; margin: 24px 0 8px; }
table { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td time, th { white-space: nowrap; }
#workers code { white-space: nowrap; word-break: normal; }
td code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; word-break: break-all; }
a { color: var(--accent); }
button { padding: 4px 10px; border-radius: 4px; border: 1px solid var(--line); background: #fff; cursor: pointer; font: inherit; }
button:hover { border-color: var(--accent); }
button.danger { color: var(--fail); }
header button { background: #2a3142; color: #fff; border-color: #4a5366; }
form.action { display: inline; }
.actions { display: flex; gap: 8px; flex-wrap: wrap; margin: 8px 0; }
.tabs { display: flex; gap: 4px; margin: 8px 0 12px; }
.tabs a { padding: 5px 12px; border-radius: 4px; background: var(--card); border: 1px solid var(--line); text-decoration: none; color: var(--fg); }
.tabs a[aria-current=page] { background: var(--accent); color: #fff; border-color: var(--accent); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; background: var(--line); }
.badge.paused, .badge.delayed, .badge.RUNNING, .badge.running { background: #fff0cf; color: #7a5310; }
.badge.completed, .badge.COMPLETED { background: #dcf3e5; color: #1e6b42; }
.badge.dead, .badge.failed, .badge.FAILED, .badge.aborted { background: #fbe0e0; color: #8d2525; }
.badge.queued, .badge.ready { background: #e1e8fb; color: #233f94; }
.muted { color: var(--muted); }
.ok { color: var(--ok); }
.fail { color: var(--fail); }
.problem { padding: 12px; background: #fbe0e0; border: 1px solid #f0b9b9; border-radius: 4px; }
#flash { margin: 8px 24px 0; padding: 8px 12px; border-radius: 4px; }
#flash.ok { background: #dcf3e5; }
#flash.error { background: #fbe0e0; }
pre.json, pre.stack { background: var(--card); border: 1px solid var(--line); padding: 10px; overflow: auto; max-height: 420px; white-space: pre-wrap; word-break: break-word; font-size: 12.5px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; background: var(--card); border: 1px solid var(--line); padding: 12px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.chart { margin: 8px 0 16px; background: var(--card); border: 1px solid var(--line); padding: 8px; }
.chart svg { width: 100%; height: auto; display: block; }
.chart figcaption { color: var(--muted); font-size: 12px; padding: 4px 2px 0; }
.bar-ok { fill: var(--ok); }
.bar-fail { fill: var(--fail); }
.axis { stroke: var(--line); }
.tick { fill: var(--muted); font-size: 11px; }
.pager { margin: 10px 0; display: flex; gap: 12px; }
.stale { opacity: .6; }
.windows { display: flex; gap: 4px; margin: 4px 0 12px; }
`;

/** Three bars of a queue, light on the header's dark blue. */
export const icon = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<rect width="32" height="32" rx="6" fill="#1d2330"/>
<path d="M8 10h16M8 16h12M8 22h7" stroke="#8fa8f0" stroke-width="3.2" stroke-linecap="round"/>
</svg>
`;
