import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * The one test configuration of the repository; every package's `vitest.config.ts` re-exports
 * it. Integration tests start real processes and talk to the real Postgres and NATS of the
 * machine, which are slow on a loaded two-core CI box: generous timeouts, and tests wait for
 * conditions rather than sleeping.
 */
export default defineConfig({
  // TypeScript's CommonJS modules (`.cts`, e.g. libs/telemetry's otel-modules.cts) are TypeScript
  // too; Vite's default transform covers `.ts`/`.mts`/`.tsx` only.
  oxc: { include: /\.(m|c)?tsx?$/ },
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
    pool: "forks",
    // Postgres for the tests: the machine's, MESHWORK_TEST_PG_URL, or an embedded one started here.
    globalSetup: [fileURLToPath(new URL("./vitest.global-setup.ts", import.meta.url))],
    reporters: process.env.CI ? ["default", "json"] : ["default"],
    outputFile: { json: ".vitest/results.json" },
  },
});
