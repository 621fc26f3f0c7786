/**
 * Logs through a batched destination, then exits at once, as the gateway's main does after
 * SIGTERM (`process.exit` once stopped): with argv `exit`, three lines logged and `process.exit(0)`
 * in the same turn, before any write or timer; with `wait`, one line and the process stays up
 * until SIGTERM.
 */
import { createLogger } from "../src/logger.js";

const logger = createLogger({ service: "child", batch: true });
if (process.argv[2] === "exit") {
  for (let i = 0; i < 3; i++) logger.info({ i }, "before exit");
  process.exit(0);
} else {
  logger.info("alone");
  const keep = setInterval(() => {}, 1_000);
  process.once("SIGTERM", () => {
    clearInterval(keep);
    logger.info("stopping");
    process.exit(0);
  });
}
