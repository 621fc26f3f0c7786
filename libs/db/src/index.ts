export {
  type DatabaseConfig,
  DEFAULT_POOL_WAIT_TIMEOUT_MS,
  databaseEnvShape,
  toDatabaseConfig,
} from "./config.js";
export { databaseServiceOptions, invalidValueOf, isConnectionError } from "./connection-errors.js";
export {
  type AnyTransaction,
  createUnitOfWork,
  type Database,
  type DatabaseHandle,
  type DatabaseObservability,
  isUniqueViolation,
  observeDatabasePool,
  openDatabase,
  type Queryable,
  queryRows,
  type Transaction,
  type UnitOfWork,
} from "./database.js";
export { DrizzleShapeError } from "./drizzle-internals.js";
export {
  DEFAULT_PAGE_SIZE,
  InvalidPageTokenError,
  keysetTokens,
  MAX_PAGE_SIZE,
  pageSize,
} from "./paging.js";
export { PoolWaitTimeoutError } from "./pool-metrics.js";
export { prepareSelect } from "./prepared-select.js";
export { prepareStatement } from "./prepared-statement.js";
export { claimSequence, type SequenceGuardTable } from "./sequence-guard.js";
export { describeStatement } from "./tracing.js";
