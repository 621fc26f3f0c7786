import { loadConfig } from "./config.js";
import { createGateway } from "./gateway.js";

const gateway = createGateway({ config: loadConfig() });
let stopping = false;
const stop = (signal: NodeJS.Signals) => {
  if (stopping) return;
  stopping = true;
  gateway.logger.info({ signal }, "shutting down");
  gateway.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      gateway.logger.error({ err }, "shutdown failed");
      process.exit(1);
    },
  );
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
try {
  await gateway.start();
} catch (err) {
  gateway.logger.fatal({ err }, "failed to start");
  process.exit(1);
}
