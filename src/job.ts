/** What `send()` returns: a handle on the job. */
export class JobHandle {
  constructor(
    readonly id: string,
    readonly queue: string,
    readonly actor: string,
    /** True when a job with this id was already known and nothing was sent. */
    readonly duplicate = false,
  ) {}

  toJSON(): { id: string; queue: string; actor: string } {
    return { id: this.id, queue: this.queue, actor: this.actor };
  }
}
