import { describe, expect, it } from "vitest";
import { describeSagaSteps } from "./queries.js";
import type { SagaHistoryEntry, SagaRow } from "./table.js";

const STEPS = ["reserve", "authorize", "capture"];
const at = "2026-12-06T10:00:00.000Z";

function row(over: Partial<SagaRow>): SagaRow {
  return {
    id: "01a24b27-d03a-76f6-a631-b784be8d1136",
    type: "t",
    status: "running",
    step: 0,
    attempts: 0,
    transientAttempts: 0,
    transientSince: null,
    history: [],
    undone: [],
    nextAttemptAt: new Date(at),
    leaseOwner: null,
    leaseUntil: null,
    data: {},
    failure: null,
    lastError: null,
    traceparent: null,
    createdAt: new Date(at),
    updatedAt: new Date(at),
    ...over,
  };
}
const statuses = (r: SagaRow) => describeSagaSteps(r, STEPS).map((s) => s.status);
const e = (step: string, outcome: SagaHistoryEntry["outcome"], attempt = 1): SagaHistoryEntry => ({
  step,
  phase: "action",
  outcome,
  attempt,
  at,
});

describe("a saga's steps from its row and history", () => {
  it("tells a running step from one retrying and one waiting out an outage", () => {
    const done = [e("reserve", "done")];
    expect(statuses(row({ step: 1, history: done }))).toEqual(["done", "running", "pending"]);
    expect(statuses(row({ step: 1, attempts: 2, history: [...done, e("authorize", "failed")] }))).toEqual([
      "done",
      "retrying",
      "pending",
    ]);
    const waiting = row({ step: 1, attempts: 1, transientSince: new Date(at), history: done });
    expect(statuses(waiting)).toEqual(["done", "waiting", "pending"]);
    // Attempts past what the history keeps come from the row.
    expect(describeSagaSteps(row({ step: 1, attempts: 37, history: done }), STEPS)[1]?.attempts).toBe(37);
  });

  it("shows a saga recorded before it had a history by its position", () => {
    expect(statuses(row({ status: "completed", step: 3 }))).toEqual(["done", "done", "done"]);
    expect(statuses(row({ step: 2 }))).toEqual(["done", "done", "running"]);
  });

  it("shows a step being undone, and a saga stopped before a step", () => {
    const history = [
      e("reserve", "done"),
      { ...e("authorize", "stopped", 0), error: "cancelled by the customer" },
    ];
    const r = row({ status: "compensating", step: 1, failure: "cancelled by the customer", history });
    expect(statuses(r)).toEqual(["done", "compensating", "pending"]);
    expect(describeSagaSteps(r, STEPS)[1]?.lastError).toBe("cancelled by the customer");
    expect(statuses(row({ status: "compensated", step: -1, history }))).toEqual([
      "done",
      "stopped",
      "skipped",
    ]);
  });
});
