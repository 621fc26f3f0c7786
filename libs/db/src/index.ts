export { type DatabaseConfig, databaseEnvShape, toDatabaseConfig } from "./config.js";
export {
  createUnitOfWork,
  type Database,
  type DatabaseHandle,
  isUniqueViolation,
  openDatabase,
  type Transaction,
  type UnitOfWork,
} from "./database.js";
