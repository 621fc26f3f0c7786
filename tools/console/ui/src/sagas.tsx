import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  type Saga,
  SagaEventOutcome,
  SagaState,
  type SagaStep,
  SagaStepStatus,
} from "@meshwork/contracts/meshwork/orders/v1/orders";
import { useState } from "preact/hooks";
import { consoleApi, formatMs, usePolled } from "./api.js";
import { type Session, useSession } from "./session.js";

const stateName = (s: SagaState) => SagaState[s] ?? "UNSPECIFIED";
const stepStatusName = (s: SagaStepStatus) => SagaStepStatus[s] ?? "UNSPECIFIED";
const outcomeName = (o: SagaEventOutcome) =>
  (SagaEventOutcome[o] ?? "UNSPECIFIED").toLowerCase().replace("_", " ");

const when = (t: Timestamp | undefined) => (t ? timestampDate(t).toLocaleTimeString() : "");
/** Milliseconds from the saga's start to `t`. */
const offset = (saga: Saga, t: Timestamp | undefined) =>
  t && saga.createTime ? timestampDate(t).getTime() - timestampDate(saga.createTime).getTime() : undefined;

const STATE_CLASS: Partial<Record<SagaState, string>> = {
  [SagaState.COMPLETED]: "ok",
  [SagaState.COMPENSATED]: "bad",
  [SagaState.COMPENSATING]: "warn",
};

/** Sagas are an operator's view: orders answers them to the admin role only. */
function NeedsOperator({ session }: { session: Session | undefined }) {
  return (
    <p class="note" data-testid="sagas-login">
      {session
        ? `Logged in as ${session.email} without the admin role: orders shows sagas to operators only.`
        : "Log in (above) with an account that has the admin role: orders shows sagas to operators only."}
    </p>
  );
}

/** The orders service's placement sagas, newest first, filtered by state, in pages. */
export function Sagas() {
  const session = useSession();
  const [state, setState] = useState<SagaState | 0>(0);
  const [pages, setPages] = useState<string[]>([""]);
  const pageToken = pages.at(-1) ?? "";
  const token = session?.token ?? "";
  const operator = session?.roles.includes("admin") ?? false;
  // Only an operator's token is sent: a customer's would only be refused, poll after poll.
  const { value, error } = usePolled(
    () =>
      operator
        ? consoleApi.listSagas({ token, states: state ? [state] : [], pageSize: 25, pageToken })
        : Promise.resolve(undefined),
    3000,
    [token, state, pageToken],
  );
  return (
    <section>
      <h2>Sagas</h2>
      {!operator && <NeedsOperator session={session} />}
      <p>
        <label>
          State{" "}
          <select
            data-testid="saga-state-filter"
            value={String(state)}
            onChange={(e) => {
              setState(Number(e.currentTarget.value) as SagaState);
              setPages([""]);
            }}
          >
            <option value="0">any</option>
            {[SagaState.RUNNING, SagaState.COMPENSATING, SagaState.COMPLETED, SagaState.COMPENSATED].map(
              (s) => (
                <option key={s} value={String(s)}>
                  {stateName(s).toLowerCase()}
                </option>
              ),
            )}
          </select>
        </label>{" "}
        {pages.length > 1 && (
          <button type="button" onClick={() => setPages(pages.slice(0, -1))}>
            Previous page
          </button>
        )}{" "}
        {value?.nextPageToken && (
          <button type="button" onClick={() => setPages([...pages, value.nextPageToken])}>
            Next page
          </button>
        )}
      </p>
      {error && <p class="error">{error}</p>}
      <table class="grid" data-testid="sagas">
        <thead>
          <tr>
            <th>Saga (order)</th>
            <th>State</th>
            <th>Current step</th>
            <th class="num">Attempts</th>
            <th>Failure / last error</th>
            <th>Started</th>
            <th>Trace</th>
          </tr>
        </thead>
        <tbody>
          {(value?.sagas ?? []).map((s) => (
            <tr key={s.id} data-testid="saga-row" data-id={s.id}>
              <td>
                <a href={`#/sagas/${s.id}`}>
                  <code>{s.id}</code>
                </a>
              </td>
              <td class={STATE_CLASS[s.state] ?? ""}>{stateName(s.state).toLowerCase()}</td>
              <td>{s.currentStep}</td>
              <td class="num">{s.currentStep ? s.attempts : ""}</td>
              <td class="wrap">{s.failure || s.lastError}</td>
              <td>{when(s.createTime)}</td>
              <td>{s.traceId && <a href={`#/traces/${s.traceId}`}>{s.traceId.slice(0, 8)}…</a>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {value && value.sagas.length === 0 && <p class="note">No saga{state ? " in this state" : ""}.</p>}
    </section>
  );
}

function StepCard({ saga, step, index }: { saga: Saga; step: SagaStep; index: number }) {
  const status = stepStatusName(step.status);
  return (
    <li
      class={`saga-step ${status.toLowerCase()}`}
      data-testid="saga-step"
      data-step={step.name}
      data-status={status}
    >
      <div class="saga-step-head">
        <b>
          {index + 1}. {step.name}
        </b>{" "}
        <span class="badge">{status.toLowerCase()}</span>{" "}
        <span class="note">
          {step.attempts} {step.attempts === 1 ? "attempt" : "attempts"}
          {step.compensationAttempts > 0 &&
            ` · ${step.compensationAttempts} compensation ${step.compensationAttempts === 1 ? "attempt" : "attempts"}`}
          {step.doneTime && ` · done at +${formatMs(offset(saga, step.doneTime) ?? 0)}`}
          {step.compensateTime && ` · undone at +${formatMs(offset(saga, step.compensateTime) ?? 0)}`}
        </span>
      </div>
      {step.lastError && <p class="error">{step.lastError}</p>}
      {step.history.length > 0 && (
        <ol class="saga-events">
          {step.history.map((e, i) => (
            <li key={i} data-testid="saga-event" data-outcome={SagaEventOutcome[e.outcome]}>
              +{formatMs(offset(saga, e.time) ?? 0)} · {e.compensation ? "compensation" : "action"}{" "}
              <b>{outcomeName(e.outcome)}</b>
              {e.attempt > 0 && ` (attempt ${e.attempt})`}
              {e.error && <span class="error"> · {e.error}</span>}
              {e.retryTime && (
                <span class="note"> · next try at +{formatMs(offset(saga, e.retryTime) ?? 0)}</span>
              )}
            </li>
          ))}
        </ol>
      )}
    </li>
  );
}

/** One saga: its state, and each step's timeline (attempts, errors, waits, compensations). */
export function SagaDetail({ id }: { id: string }) {
  const session = useSession();
  const token = session?.token ?? "";
  const operator = session?.roles.includes("admin") ?? false;
  const { value, error } = usePolled(
    () => (operator ? consoleApi.getSaga({ token, id }) : Promise.resolve(undefined)),
    2000,
    [token, id],
  );
  const saga = operator ? value?.saga : undefined;
  return (
    <section>
      <h2>
        <a href="#/sagas">Sagas</a> / <code>{id}</code>
      </h2>
      {!operator && <NeedsOperator session={session} />}
      {error && <p class="error">{error}</p>}
      {saga && (
        <>
          <p data-testid="saga-summary">
            <span class={`status ${STATE_CLASS[saga.state] ?? ""}`} data-testid="saga-state">
              {stateName(saga.state)}
            </span>{" "}
            {saga.type} · started {when(saga.createTime)} · last change {when(saga.updateTime)}
            {saga.currentStep && ` · at ${saga.currentStep}, attempt ${saga.attempts}`}
            {saga.unavailableSince && ` · unavailable since ${when(saga.unavailableSince)}`}
            {saga.nextAttemptTime && saga.currentStep && ` · next attempt ${when(saga.nextAttemptTime)}`}
          </p>
          {saga.failure && (
            <p class="error" data-testid="saga-failure">
              {saga.state === SagaState.COMPENSATED ? "cancelled: " : "compensating: "}
              {saga.failure}
              {saga.undoneSteps.length > 0 && ` (undone: ${saga.undoneSteps.join(", ")})`}
            </p>
          )}
          <p>
            {saga.traceId && (
              <a href={`#/traces/${saga.traceId}`} data-testid="saga-trace">
                Trace {saga.traceId}
              </a>
            )}{" "}
            ·{" "}
            <a href="#/explorer/meshwork.orders.v1.OrderService/GetOrder" title="GetOrder takes this id">
              the order ({saga.id})
            </a>
          </p>
          <ol class="saga-steps" data-testid="saga-steps">
            {saga.steps.map((s, i) => (
              <StepCard key={s.name} saga={saga} step={s} index={i} />
            ))}
          </ol>
        </>
      )}
    </section>
  );
}
