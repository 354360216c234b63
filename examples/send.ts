/** Sends a few example jobs: `bun examples/send.ts` while a worker runs. */
import { closeBroker, sendTask } from "../src/mod.ts";
import { processOrder, sendEmail } from "./app.ts";

const welcome = await sendEmail.send({ to: "john@example.com", subject: "Welcome!" });
console.log("sent", welcome.id);
await processOrder.send({ orderId: 42, email: "jane@example.com" });
await sendEmail.send({ to: "flaky@example.com", subject: "retried twice" });
await sendEmail.send({ to: "nobody@invalid.example", subject: "dead-lettered at once" });
await sendTask("mailing_send_task", { to: "late@example.com", subject: "in 3 s" }, { delay: 3_000 });
await closeBroker();
