import { runService } from "@meshwork/runtime";
import { loadConfig } from "./config.js";
import { createOrdersService } from "./server.js";

await runService(await createOrdersService(loadConfig()));
