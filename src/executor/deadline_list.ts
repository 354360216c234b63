/** What the list keeps per job: its links, so that a job that finishes leaves in O(1). */
export interface Timed {
  deadline: number;
  /** The limit it was added with: which list holds it. */
  limit: number;
  prev: Timed | undefined;
  next: Timed | undefined;
  /** True while in a list. */
  listed: boolean;
}

interface List {
  head: Timed | undefined;
  tail: Timed | undefined;
}

/**
 * Time limits of running jobs with one timer in all, not one per job: a timer per job cost more than
 * a no-op job itself (the hot-path work of 675665e, 2026-12-01). Jobs with the same limit expire in
 * the order they started, so a list per distinct limit (there is about one per actor) stays sorted
 * by appending, a job that finishes unlinks itself, and the one timer waits for the earliest head.
 */
export class DeadlineList<T extends Timed> {
  readonly #lists = new Map<number, List>();
  readonly #expire: (item: T) => void;
  readonly #now: () => number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedAt = Infinity;
  #size = 0;

  constructor(expire: (item: T) => void, now: () => number = () => performance.now()) {
    this.#expire = expire;
    this.#now = now;
  }

  /** Expires `item` `limit` ms from now, unless it is removed first. */
  add(item: T, limit: number): void {
    item.limit = limit;
    item.deadline = this.#now() + limit;
    item.listed = true;
    this.#size++;
    let list = this.#lists.get(limit);
    if (!list) this.#lists.set(limit, (list = { head: undefined, tail: undefined }));
    item.prev = list.tail;
    item.next = undefined;
    if (list.tail) list.tail.next = item;
    else list.head = item;
    list.tail = item;
    if (item.deadline < this.#armedAt) this.#arm(item.deadline);
  }

  remove(item: T): void {
    if (!item.listed) return;
    item.listed = false;
    const list = this.#lists.get(item.limit)!;
    if (item.prev) item.prev.next = item.next;
    else list.head = item.next;
    if (item.next) item.next.prev = item.prev;
    else list.tail = item.prev;
    item.prev = item.next = undefined;
    // The timer stays armed while jobs run (one early wake-up is cheaper than re-arming on every
    // finish), but must not hold the process open once none does.
    if (--this.#size === 0) this.close();
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Infinity;
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#armedAt = at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - this.#now()));
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    const now = this.#now();
    let next = Infinity;
    for (const list of this.#lists.values()) {
      while (list.head && list.head.deadline <= now) {
        const item = list.head as T;
        this.remove(item);
        this.#expire(item);
      }
      if (list.head) next = Math.min(next, list.head.deadline);
    }
    // An expire callback may have added (and armed) meanwhile.
    if (next < this.#armedAt) this.#arm(next);
  }
}
