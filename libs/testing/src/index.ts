export { freePort } from "@meshwork/local-postgres";
export {
  MACHINE_POSTGRES_URL,
  resolveTestPostgres,
  type TestPostgres,
} from "./embedded-postgres.js";
export { fuzzParameters, fuzzRuns, loadCorpus } from "./fuzz.js";
export { type FuzzRequest, fuzzRequestArb } from "./fuzz-requests.js";
export { grpc, grpcJsClient, grpcJsUnary, loadGrpcJsPackage } from "./grpc-js.js";
export { captureLogs, type LogCapture } from "./logs.js";
export { startNatsServer, type TestNatsServer } from "./nats-server.js";
export {
  adminUrl,
  createTestDatabase,
  type TestDatabase,
  uniqueName,
  waitForLockWaiter,
} from "./postgres.js";
export { type ManagedProcess, type StartOptions, startProcess } from "./process.js";
export { guardGroup, killGroup, releaseGroup } from "./process-guard.js";
export { startRedisServer, type TestRedisServer } from "./redis-server.js";
export { type ServiceProcess, startService, uniqueNamespace } from "./service.js";
export { type WaitOptions, waitFor } from "./wait.js";
export { answerStatus, isInternal, type RawAnswer, rawExchange } from "./wire.js";
