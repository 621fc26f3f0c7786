export {
  SagaAbort,
  type SagaDefinition,
  type SagaStep,
  SagaUnavailable,
  type StepContext,
} from "./definition.js";
export {
  createSagaExecutor,
  type SagaExecutor,
  type SagaExecutorOptions,
  type StartInOptions,
} from "./executor.js";
export {
  createSagaQueries,
  describeSagaSteps,
  readSagaHistory,
  type SagaListFilter,
  type SagaQueries,
  type SagaStepStatus,
  type SagaStepView,
  type SagaSummary,
} from "./queries.js";
export { startSaga } from "./start.js";
export { type SagaHistoryEntry, type SagaRow, type SagaTable, sagaTable } from "./table.js";
