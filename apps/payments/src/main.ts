import { runService } from "@meshwork/runtime";
import { loadConfig } from "./config.js";
import { createPaymentsService } from "./server.js";

await runService(await createPaymentsService(loadConfig()));
