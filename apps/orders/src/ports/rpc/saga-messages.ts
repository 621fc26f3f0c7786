import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type Saga,
  SagaEventOutcome,
  SagaSchema,
  SagaState,
  SagaStepStatus,
} from "@meshwork/contracts/meshwork/orders/v1/orders";
import {
  describeSagaSteps,
  type SagaHistoryEntry,
  type SagaRow,
  type SagaSummary,
  type SagaStepStatus as StepStatus,
} from "@meshwork/saga";

const STATES = {
  running: SagaState.RUNNING,
  compensating: SagaState.COMPENSATING,
  completed: SagaState.COMPLETED,
  compensated: SagaState.COMPENSATED,
} as const satisfies Record<SagaRow["status"], SagaState>;

/** The stored state of a requested SagaState (UNSPECIFIED is refused by validation). */
export const stateOf = (s: SagaState): SagaRow["status"] => {
  const found = (Object.keys(STATES) as SagaRow["status"][]).find((k) => STATES[k] === s);
  if (!found) throw new Error(`unknown saga state ${s}`);
  return found;
};

const STEP_STATUSES = {
  pending: SagaStepStatus.PENDING,
  skipped: SagaStepStatus.SKIPPED,
  running: SagaStepStatus.RUNNING,
  retrying: SagaStepStatus.RETRYING,
  waiting: SagaStepStatus.WAITING,
  done: SagaStepStatus.DONE,
  failed: SagaStepStatus.FAILED,
  stopped: SagaStepStatus.STOPPED,
  compensating: SagaStepStatus.COMPENSATING,
  compensated: SagaStepStatus.COMPENSATED,
} as const satisfies Record<StepStatus, SagaStepStatus>;

const OUTCOMES = {
  done: SagaEventOutcome.DONE,
  undone: SagaEventOutcome.UNDONE,
  failed: SagaEventOutcome.FAILED,
  unavailable: SagaEventOutcome.UNAVAILABLE,
  refused: SagaEventOutcome.REFUSED,
  gave_up: SagaEventOutcome.GAVE_UP,
  stopped: SagaEventOutcome.STOPPED,
} as const satisfies Record<SagaHistoryEntry["outcome"], SagaEventOutcome>;

const time = (d: Date | null | undefined) => (d ? timestampFromDate(d) : undefined);

/** The trace id of a W3C traceparent (`00-<trace id>-<span id>-<flags>`). */
const traceIdOf = (traceparent: string | null): string => traceparent?.split("-")[1] ?? "";

/** A saga as ListSagas answers it (no steps). */
export function toSagaSummaryMessage(row: SagaSummary, stepNames: readonly string[]): Saga {
  const active = row.status === "running" || row.status === "compensating";
  return create(SagaSchema, {
    id: row.id,
    type: row.type,
    state: STATES[row.status],
    currentStep: active ? (stepNames[row.step] ?? "") : "",
    attempts: active ? row.attempts : 0,
    failure: row.failure ?? "",
    lastError: row.lastError ?? "",
    nextAttemptTime: active ? time(row.nextAttemptAt) : undefined,
    unavailableSince: active ? time(row.transientSince) : undefined,
    leaseOwner: active ? (row.leaseOwner ?? "") : "",
    leaseExpireTime: active ? time(row.leaseUntil) : undefined,
    traceId: traceIdOf(row.traceparent),
    undoneSteps: row.undone,
    createTime: time(row.createdAt),
    updateTime: time(row.updatedAt),
  });
}

/** A saga as GetSaga answers it: with every step and its history. */
export function toSagaMessage(row: SagaRow, stepNames: readonly string[]): Saga {
  const saga = toSagaSummaryMessage(row, stepNames);
  saga.steps = describeSagaSteps(row, stepNames).map((s) => ({
    $typeName: "meshwork.orders.v1.SagaStep",
    name: s.name,
    status: STEP_STATUSES[s.status],
    attempts: s.attempts,
    compensationAttempts: s.compensationAttempts,
    lastError: s.lastError ?? "",
    doneTime: time(s.doneAt),
    compensateTime: time(s.compensatedAt),
    history: s.history.map((e) => ({
      $typeName: "meshwork.orders.v1.SagaEvent",
      step: e.step,
      compensation: e.phase === "compensate",
      outcome: OUTCOMES[e.outcome],
      attempt: e.attempt,
      time: timestampFromDate(new Date(e.at)),
      error: e.error ?? "",
      retryTime: e.retryAt ? timestampFromDate(new Date(e.retryAt)) : undefined,
    })),
  }));
  return saga;
}
