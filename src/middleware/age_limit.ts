import { MaxAgeExceeded, serializeError } from "../errors.ts";
import type { Middleware } from "../middleware.ts";

/** Dead-letters messages older than the actor's `maxAge` instead of running them. */
export const ageLimit: Middleware = {
  name: "ageLimit",
  beforeProcess({ delivery, actor }) {
    const maxAge = actor.options.maxAge;
    if (maxAge === undefined) return;
    const age = Date.now() - delivery.message.sentAt;
    if (age <= maxAge) return;
    const error = new MaxAgeExceeded(`message is ${age} ms old; actor "${actor.name}" allows ${maxAge} ms`);
    return { kind: "deadLetter", error: serializeError(error) };
  },
};
