/**
 * What both brokers' `browse` and `findJob` share: the page size, the cursors, and how a stored body
 * becomes a {@link BrowsedJob}. The Redis side is browse.ts, the memory side memory_browse.ts; the
 * cursors are alike because the memory broker's entry ids look like Redis's ("<ms>-<seq>").
 */
import { ConfigError } from "../errors.ts";
import { decodeMessage } from "../message.ts";
import type { BrowsedJob, BrowseOptions, JobState } from "./types.ts";

export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 500;
export const DEFAULT_SCAN = 10_000;

const STATES: readonly JobState[] = ["ready", "running", "delayed", "dead"];

/**
 * Where the previous page ended, by state:
 *   ready, running  "r:<priority>:<entryId>", "p:<priority>:<entryId>": the last item's level and entry
 *   delayed         "d:<score>:<skip>": the last item's due time, and how many items due at exactly
 *                   that time were listed (ties are rare: due times are in ms)
 *   dead            "x:<letterId>": the last letter
 * Each names the last item rather than an offset, so that what workers take or add meanwhile shifts
 * no page: an item is neither listed twice nor skipped unless it moved.
 */
export type Cursor =
  | { state: "ready" | "running"; priority: number; id: string }
  | { state: "delayed"; score: string; skip: number }
  | { state: "dead"; id: string };

const LETTER: Record<JobState, string> = { ready: "r", running: "p", delayed: "d", dead: "x" };
const ENTRY_ID = /^\d{1,20}-\d{1,20}$/;
const SCORE = /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i;

/** The state, page size and cursor of a browse call; a ConfigError for anything else (a dashboard's 400). */
export function pageRequest(state: JobState, options: BrowseOptions = {}): { limit: number; cursor: Cursor | undefined } {
  if (!STATES.includes(state)) throw new ConfigError(`unknown job state ${JSON.stringify(state)}: use one of ${STATES.join(", ")}`);
  const limit = options.limit ?? DEFAULT_PAGE;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    throw new ConfigError(`browse limit must be a whole number from 1 to ${MAX_PAGE}, not ${String(limit)}`);
  }
  // An empty cursor is a form field left blank: the first page.
  if (options.cursor === undefined || options.cursor === "") return { limit, cursor: undefined };
  const cursor = parseCursor(state, options.cursor);
  if (!cursor) throw new ConfigError(`invalid ${state} cursor ${JSON.stringify(String(options.cursor).slice(0, 80))}: pass back a page's "next" as it came`);
  return { limit, cursor };
}

function parseCursor(state: JobState, text: unknown): Cursor | undefined {
  if (typeof text !== "string") return undefined;
  const [letter, a, b, extra] = text.split(":");
  if (letter !== LETTER[state] || a === undefined || extra !== undefined) return undefined;
  if (state === "dead") return b === undefined && ENTRY_ID.test(a) ? { state, id: a } : undefined;
  if (b === undefined) return undefined;
  if (state === "delayed") {
    const skip = Number(b);
    return SCORE.test(a) && Number.isFinite(Number(a)) && /^\d{1,9}$/.test(b) ? { state, score: a, skip } : undefined;
  }
  return /^-?\d{1,15}$/.test(a) && ENTRY_ID.test(b) ? { state, priority: Number(a), id: b } : undefined;
}

export function streamCursor(state: "ready" | "running", priority: number, id: string): string {
  return `${LETTER[state]}:${priority}:${id}`;
}

export function delayedCursor(score: string, skip: number): string {
  return `d:${score}:${skip}`;
}

export function deadCursor(id: string): string {
  return `x:${id}`;
}

/** Orders stream entry ids "<ms>-<seq>" (as numbers: "10-0" comes after "9-5"). */
export function compareIds(a: string, b: string): number {
  const [am = "0", as = "0"] = a.split("-");
  const [bm = "0", bs = "0"] = b.split("-");
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

/** Running items in order: oldest entry first, and on equal ids (two levels) the higher level first. */
export function compareRunning(a: { id: string; priority: number }, b: { id: string; priority: number }): number {
  return compareIds(a.id, b.id) || b.priority - a.priority;
}

/** A stored body as a listed job. One that cannot be decoded lists with its raw body and its locator as id. */
export function jobItem(state: JobState, queue: string, ref: string, body: string | undefined, retries: number): BrowsedJob {
  try {
    const message = decodeMessage(body, queue);
    return { state, id: message.id, ref, queue, message, retries };
  } catch {
    return { state, id: ref, ref, queue, message: { raw: body ?? "" }, retries };
  }
}

/** A scan limit for findJob: a positive whole number. */
export function scanLimit(value: number | undefined): number {
  const n = value ?? DEFAULT_SCAN;
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`findJob scanLimit must be a whole number of at least 1, not ${String(value)}`);
  return n;
}
