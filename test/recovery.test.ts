/** The kill -9 recovery suite (recovery.ts) on one Redis. */
import { killRecovery } from "./recovery.ts";
import { oneRedis } from "./target.ts";

killRecovery(oneRedis);
