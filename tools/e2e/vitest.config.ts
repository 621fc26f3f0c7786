import { defineConfig, mergeConfig } from "vitest/config";
import shared from "../../vitest.shared.js";

// A suite's beforeAll starts a whole mesh: five services one after another, each waiting for its
// migrations and its announcement, then the gateway. At CI's load (two cores, several packages'
// process-starting tests at once) that passed the shared 120 s three times in one run (14:30,
// load 13-17); a spawn alone may wait 120 s for a service.
export default mergeConfig(shared, defineConfig({ test: { hookTimeout: 300_000 } }));
