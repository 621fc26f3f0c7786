import { runService } from "@meshwork/runtime";
import { loadConfig } from "./config.js";
import { createInventoryService } from "./server.js";

await runService(await createInventoryService(loadConfig()));
