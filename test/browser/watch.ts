/**
 * A Chromium tab under watch for the browser test and the screenshots: console errors, uncaught
 * errors, failed requests and CSP violations are collected per page, confirm() dialogs answered as
 * told, and the page's POSTs to /api/ listed; plus the few steps every check takes on a page.
 */
import type { Browser, BrowserContext, Page } from "playwright-core";

function assert(ok: unknown, message: string): asserts ok {
  if (!ok) throw new Error(message);
}

/** A tab whose console errors, uncaught errors, failed requests and CSP violations land in `problems`. */
export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  problems: string[];
  /** The messages of the confirm() dialogs seen, in order. */
  dialogs: string[];
  /** What the next confirm() gets: true accepts it. */
  confirm: boolean;
  /** The POSTs the page sent to /api/. */
  actions: string[];
}

export async function watchedPage(browser: Browser, viewport = { width: 1280, height: 800 }): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const w: WatchedPage = { page, context, problems: [], dialogs: [], confirm: true, actions: [] };
  // From the page's own event, which names the directive, rather than from Chromium's wording of
  // its console line; a binding reaches this process whatever the page's CSP allows.
  await context.exposeBinding("__reportCsp", (_source, text: string) => void w.problems.push(`CSP violation: ${text}`));
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      (window as unknown as { __reportCsp(t: string): void }).__reportCsp(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
    });
  });
  page.on("console", (m) => {
    if (m.type() === "error") w.problems.push(`console: ${m.text()} (${m.location().url || "?"})`);
  });
  page.on("pageerror", (e) => w.problems.push(`uncaught: ${e.message}`));
  // A refresh cut short by a navigation is aborted, which is not a problem.
  page.on("requestfailed", (r) => {
    if (!/ERR_ABORTED/.test(r.failure()?.errorText ?? "")) w.problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on("request", (r) => {
    if (r.method() === "POST" && new URL(r.url()).pathname.includes("/api/")) w.actions.push(new URL(r.url()).pathname);
  });
  page.on("dialog", (d) => {
    w.dialogs.push(d.message());
    void (w.confirm ? d.accept() : d.dismiss());
  });
  return w;
}

/** Opens `path` on `base` and checks the answer's status. Problems seen before are forgotten. */
export async function open(w: WatchedPage, base: string, path: string, status = 200): Promise<void> {
  w.problems.length = 0;
  const res = await w.page.goto(`${base}${path}`, { waitUntil: "load" });
  assert(res?.status() === status, `GET ${path} answered ${res?.status()}, expected ${status}`);
}

let checked = 0;

/** How many pages {@link clean} passed. */
export const pagesChecked = (): number => checked;

/**
 * The page is clean: no console error, failed request or CSP violation (`allow` lets through the
 * console line Chromium writes for a 4xx page), no `window.__xss`, and no element made from Redis
 * data: the only scripts are the page's own and no page has an <img>.
 */
export async function clean(w: WatchedPage, allow?: RegExp): Promise<void> {
  const found = await w.page.evaluate(() => ({
    xss: typeof (window as unknown as { __xss?: unknown }).__xss,
    imgs: document.querySelectorAll("img").length,
    scripts: Array.from(document.querySelectorAll("script"), (s) => s.getAttribute("src") ?? "inline"),
  }));
  const problems = w.problems.filter((p) => !allow?.test(p));
  assert(problems.length === 0, `problems on ${w.page.url()}:\n${problems.join("\n")}`);
  assert(found.xss === "undefined", `window.__xss is ${found.xss} on ${w.page.url()}`);
  assert(found.imgs === 0, `${found.imgs} <img> elements on ${w.page.url()}`);
  assert(found.scripts.length === 1 && found.scripts[0]!.endsWith("/assets/dashboard.js"), `scripts on ${w.page.url()}: ${found.scripts.join(", ")}`);
  checked++;
}

export const textOf = async (w: WatchedPage, selector: string): Promise<string> => (await w.page.locator(selector).first().innerText()).trim();

/** Waits for the flash of kind `ok` or `error` to say `what` (after a reload, for an action that worked). */
export async function flash(w: WatchedPage, kind: "ok" | "error", what: string | RegExp): Promise<string> {
  const locator = w.page.locator(`#flash.${kind}:not([hidden])`, { hasText: what });
  await locator.waitFor({ timeout: 10_000 });
  return (await locator.innerText()).trim();
}
