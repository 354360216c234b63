/** The results end-to-end suite (results_e2e.ts) on one Redis. */
import { resultsEndToEnd } from "./results_e2e.ts";
import { oneRedis } from "./target.ts";

resultsEndToEnd(oneRedis);
