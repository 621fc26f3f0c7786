import type { AllowedLongFunction } from "./function-lengths.js";

/**
 * Functions allowed over the bar, each with its reason. Only what truly cannot be split belongs
 * here for good. "pending" entries are debts still to pay (issue 22): ones other work is changing
 * right now, and ones not split yet. The test fails when an entry is no longer needed, so the list
 * only shrinks; line counts in the comments are from when each entry was added.
 */
export const ALLOWED_LONG_FUNCTIONS: readonly AllowedLongFunction[] = [
  {
    file: "apps/legacy/src/sync/cdc-relay.ts",
    name: "createCdcTranslator",
    reason: "pending: new with the strangler data sync, landed with this bar; not split yet (issue 22)",
  }, // 88 lines
  {
    file: "apps/inventory/src/adapters/db/legacy-sync.ts",
    name: "applyLegacyProduct",
    reason: "pending: new with the strangler data sync, landed with this bar; not split yet (issue 22)",
  }, // 87 lines
  {
    file: "apps/legacy/src/app.ts",
    name: "createLegacyApp",
    reason: "pending: being changed in another branch now; split it after that lands (issue 22)",
  }, // 197 lines
  { file: "apps/gateway/src/gateway.ts", name: "createGateway", reason: "pending: not split yet (issue 22)" }, // 172 lines
  {
    file: "libs/runtime/src/interceptors/telemetry.ts",
    name: "createTelemetryInterceptor",
    reason: "pending: being changed in another branch now; split it after that lands (issue 22)",
  }, // 126 lines
  {
    file: "libs/tracestore/src/receiver.ts",
    name: "createReceiverHandler",
    reason: "pending: not split yet (issue 22)",
  }, // 123 lines
  {
    file: "apps/gateway/src/auth.ts",
    name: "createAuthenticator",
    reason: "pending: not split yet (issue 22)",
  }, // 106 lines
  {
    file: "libs/local-postgres/src/server.ts",
    name: "startLocalPostgres",
    reason: "pending: not split yet (issue 22)",
  }, // 100 lines
  { file: "apps/gateway/src/jwks.ts", name: "createJwks", reason: "pending: not split yet (issue 22)" }, // 91 lines
  {
    file: "libs/events/src/consumer.ts",
    name: "createEventConsumer",
    reason: "pending: not split yet (issue 22)",
  }, // 88 lines
];
