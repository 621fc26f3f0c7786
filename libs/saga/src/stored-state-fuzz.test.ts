import { fuzzParameters, loadCorpus } from "@meshwork/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { describeSagaSteps } from "./queries.js";
import type { SagaRow } from "./table.js";

// Issue 26.3: a saga's stored state read back (GetSaga, the console) under whatever the row holds:
// its jsonb history may come from another version of the code or a hand edit. The property: it
// never throws, gives one view per step, and every entry it shows has a readable time (orders
// turns each into a protobuf Timestamp, which throws on an invalid date). Corpus:
// fuzz-corpus/stored-state.json.

const STEPS = ["reserve", "authorize", "confirm"];

interface Stored {
  status: string;
  step: number;
  attempts: number;
  history: unknown;
}

const entryArb = fc.oneof(
  fc.record(
    {
      step: fc.oneof(fc.constantFrom(...STEPS), fc.string({ maxLength: 8 })),
      phase: fc.oneof(fc.constantFrom("action", "compensate"), fc.jsonValue({ maxDepth: 0 })),
      outcome: fc.oneof(
        fc.constantFrom("done", "undone", "failed", "unavailable", "refused", "gave_up", "stopped"),
        fc.string(),
      ),
      attempt: fc.oneof(fc.nat(10), fc.double(), fc.string({ maxLength: 3 })),
      at: fc.oneof(
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        fc.string({ maxLength: 12 }),
        fc.integer(),
      ),
      error: fc.jsonValue({ maxDepth: 0 }),
      retryAt: fc.oneof(
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        fc.string({ maxLength: 12 }),
      ),
    },
    { requiredKeys: [] },
  ),
  fc.jsonValue({ maxDepth: 2 }),
);

const storedArb = fc.record({
  status: fc.oneof(
    fc.constantFrom("running", "compensating", "completed", "compensated"),
    fc.string({ maxLength: 8 }),
  ),
  step: fc.integer({ min: -3, max: 6 }),
  attempts: fc.integer({ min: -3, max: 30 }),
  history: fc.oneof(
    { weight: 4, arbitrary: fc.array(entryArb, { maxLength: 12 }) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  ),
});

function rowOf(s: Stored): SagaRow {
  const now = new Date();
  return {
    id: "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11",
    type: "placement",
    status: s.status as SagaRow["status"],
    step: s.step,
    attempts: s.attempts,
    transientAttempts: 0,
    transientSince: null,
    history: s.history as SagaRow["history"],
    undone: [],
    nextAttemptAt: now,
    leaseOwner: null,
    leaseUntil: null,
    data: {},
    failure: null,
    lastError: null,
    traceparent: null,
    createdAt: now,
    updatedAt: now,
  };
}

describe("describeSagaSteps over any stored row", () => {
  it("never throws; one view per step; every entry shown has readable times", () => {
    fc.assert(
      fc.property(storedArb, (stored: Stored) => {
        const views = describeSagaSteps(rowOf(stored), STEPS);
        expect(views.map((v) => v.name)).toEqual(STEPS);
        for (const v of views) {
          for (const e of v.history) {
            expect(Number.isNaN(new Date(e.at).getTime())).toBe(false);
            if (e.retryAt !== undefined) expect(Number.isNaN(new Date(e.retryAt).getTime())).toBe(false);
          }
          if (v.doneAt) expect(Number.isNaN(v.doneAt.getTime())).toBe(false);
        }
      }),
      fuzzParameters(loadCorpus<Stored>(new URL("../fuzz-corpus/stored-state.json", import.meta.url)), 3_000),
    );
  });
});
