export {
  SagaAbort,
  type SagaDefinition,
  type SagaStep,
  SagaUnavailable,
  type StepContext,
} from "./definition.js";
export { createSagaExecutor, type SagaExecutor, type SagaExecutorOptions } from "./executor.js";
export { startSaga } from "./start.js";
export { type SagaRow, type SagaTable, sagaTable } from "./table.js";
