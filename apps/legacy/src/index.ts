/** The monolith as a library, for tests and tools that run it in-process. */
export { createLegacyApp, type LegacyAppOptions } from "./app.js";
export { MIGRATIONS, migrate } from "./schema.js";
export { DEMO_PASSWORD, SEED, seed } from "./seed.js";
