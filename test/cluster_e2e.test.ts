/**
 * The end-to-end suites on the local Redis Cluster (3 masters with a replica each), as they run on
 * one Redis: results, groups and pipelines over queues on three masters (results_e2e.ts), kill -9
 * recovery on two masters (recovery.ts), and cron across schedulers and workers (cron_e2e.ts). Worker
 * and scheduler processes get the cluster's `redis+cluster://` URL. Skipped locally without
 * redis-server or redis-cli; in CI their absence fails the file.
 */
import { cronEndToEnd } from "./cron_e2e.ts";
import { killRecovery } from "./recovery.ts";
import { resultsEndToEnd } from "./results_e2e.ts";
import { localCluster } from "./target.ts";

const cluster = localCluster();

resultsEndToEnd(cluster);
killRecovery(cluster);
cronEndToEnd(cluster);
