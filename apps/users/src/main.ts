import { runService } from "@meshwork/runtime";
import { loadConfig } from "./config.js";
import { createUsersService } from "./server.js";

await runService(await createUsersService(loadConfig()));
