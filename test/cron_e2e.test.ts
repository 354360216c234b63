/** The cron end-to-end suite (cron_e2e.ts) on one Redis. */
import { cronEndToEnd } from "./cron_e2e.ts";
import { oneRedis } from "./target.ts";

cronEndToEnd(oneRedis);
