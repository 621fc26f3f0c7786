import { defineConfig, mergeConfig } from "vitest/config";
import shared from "../../vitest.shared.js";

/**
 * Two test files at a time (vitest's default on a two-core machine is one): most of this
 * package's time is its int files waiting on the processes they start (`meshctl up`'s services,
 * embedded Postgres, nats-server, Chromium), and one file at a time made it the tail of CI's
 * `npm test` (~7.5 of 18.5 min). The files share nothing that could collide: each one has its own
 * MESHWORK_HOME (mkdtemp), namespace and databases (unique names), and binds port 0 (`--ports auto`).
 */
export default mergeConfig(shared, defineConfig({ test: { maxWorkers: 2 } }));
