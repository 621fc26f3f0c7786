import { runService } from "@meshwork/runtime";
import { loadConfig } from "./config.js";
import { createNotificationsService } from "./server.js";

await runService(await createNotificationsService(loadConfig()));
