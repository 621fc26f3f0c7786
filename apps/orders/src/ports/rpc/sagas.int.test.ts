import { randomUUID } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  OrderService,
  SagaEventOutcome,
  SagaState,
  SagaStepStatus,
} from "@meshwork/contracts/meshwork/orders/v1/orders";
import type { Service } from "@meshwork/runtime";
import { testIdentity } from "@meshwork/runtime/testing";
import {
  createSagaExecutor,
  createSagaQueries,
  SagaAbort,
  type SagaDefinition,
  type SagaExecutor,
} from "@meshwork/saga";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { waitFor } from "@meshwork/testing";
import { eq } from "drizzle-orm";
import { v7 as uuidv7 } from "uuid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  openTestStore,
  placeTestOrder,
  startTestOrderService,
  type TestStore,
} from "../../../test/harness.js";
import { orderRepository, type StartPlacement } from "../../adapters/db/order-store.js";
import { sagas } from "../../adapters/db/schema.js";
import type { PlacementData } from "../../domain/order.js";

const identity = testIdentity(["gateway"]);
const STEPS = ["reserve", "authorize", "capture"];

/** The placement saga's shape with a payment that is declined: its compensation runs for real. */
const declined: SagaDefinition<PlacementData> = {
  type: "order-placement",
  steps: STEPS.map((name) => ({
    name,
    async action() {
      if (name === "authorize") throw new SagaAbort("payment declined: card expired");
    },
    compensate: async () => undefined,
  })),
  maxAttempts: 3,
  initialDelayMs: 10,
  maxDelayMs: 20,
  stepTimeoutMs: 5_000,
};

describe("ListSagas and GetSaga (operators)", () => {
  let t: TestStore;
  let service: Service;
  let executor: SagaExecutor;
  let url: string;
  let orderId: string;
  const admin = randomUUID();
  const customer = randomUUID();

  beforeAll(async () => {
    t = await openTestStore("mw_osaga");
    const { handle, store } = t;
    const telemetry = createTelemetry({ serviceName: "orders-saga-test" });
    executor = createSagaExecutor({
      database: handle,
      table: sagas,
      definitions: [declined],
      logger: createLogger({ service: "orders-saga-test", level: "silent" }),
      tracer: telemetry.tracer,
      meter: telemetry.meter,
      leaseMs: 10_000,
      pollMs: 20,
      batchSize: 4,
    });
    await executor.start();
    const startPlacement: StartPlacement = async (tx, instance) => {
      const run = await executor.startIn(tx, declined, instance);
      return run;
    };
    orderId = await placeTestOrder(store, customer, startPlacement);
    executor.kick();
    await waitFor(
      async () =>
        (await handle.db.select().from(sagas).where(eq(sagas.id, orderId)))[0]?.status === "compensated",
      { what: "the declined order's saga to be compensated", timeoutMs: 30_000 },
    );
    const queries = createSagaQueries({ database: handle, table: sagas });
    ({ service, url } = await startTestOrderService(identity.config(), {
      orders: () => orderRepository(store, startPlacement),
      sagas: () => queries,
      sagaSteps: () => STEPS,
    }));
  }, 60_000);
  afterAll(async () => {
    await executor?.stop();
    await service?.shutdown();
    await t?.close();
  });

  const client = () => createClient(OrderService, createGrpcTransport({ baseUrl: url }));
  const asAdmin = () => ({ headers: identity.headers("orders", admin, ["customer", "admin"]) });
  const asCustomer = () => ({ headers: identity.headers("orders", customer) });
  const codeOf = (p: Promise<unknown>) =>
    p.then(
      () => "OK",
      (e: unknown) => Code[ConnectError.from(e).code],
    );

  it("shows a compensated saga's steps: done, refused, undone in reverse, the rest skipped", async () => {
    const { saga } = await client().getSaga({ id: orderId }, asAdmin());
    expect(saga?.id).toBe(orderId);
    expect(saga?.state).toBe(SagaState.COMPENSATED);
    expect(saga?.failure).toBe("payment declined: card expired");
    expect(saga?.currentStep).toBe("");
    expect(
      saga?.steps.map((s) => [s.name, SagaStepStatus[s.status], s.attempts, s.compensationAttempts]),
    ).toEqual([
      ["reserve", "COMPENSATED", 1, 1],
      ["authorize", "COMPENSATED", 1, 1],
      ["capture", "SKIPPED", 0, 0],
    ]);
    const [reserve, authorize] = saga?.steps ?? [];
    expect(reserve?.history.map((e) => [e.compensation, SagaEventOutcome[e.outcome]])).toEqual([
      [false, "DONE"],
      [true, "DONE"],
    ]);
    expect(authorize?.history.map((e) => [e.compensation, SagaEventOutcome[e.outcome], e.error])).toEqual([
      [false, "REFUSED", "payment declined: card expired"],
      [true, "DONE", ""],
    ]);
    // Undone in reverse: authorize before reserve, both after reserve was done.
    const at = (t: Parameters<typeof timestampDate>[0] | undefined) => (t ? timestampDate(t).getTime() : NaN);
    expect(at(reserve?.doneTime)).toBeLessThanOrEqual(at(authorize?.compensateTime));
    expect(at(authorize?.compensateTime)).toBeLessThanOrEqual(at(reserve?.compensateTime));
  });

  it("lists sagas by state, newest first, in pages", async () => {
    const all = await client().listSagas({}, asAdmin());
    expect(all.sagas.map((s) => s.id)).toEqual([orderId]);
    expect(all.sagas[0]?.steps).toEqual([]);
    expect(
      (await client().listSagas({ states: [SagaState.COMPENSATED] }, asAdmin())).sagas.map((s) => s.id),
    ).toEqual([orderId]);
    expect((await client().listSagas({ states: [SagaState.RUNNING] }, asAdmin())).sagas).toEqual([]);
    expect(await codeOf(client().listSagas({ pageToken: "bm90LWEtdG9rZW4" }, asAdmin()))).toBe(
      "InvalidArgument",
    );
    expect(await codeOf(client().listSagas({ states: [SagaState.UNSPECIFIED] }, asAdmin()))).toBe(
      "InvalidArgument",
    );
  });

  it("refuses a customer with PERMISSION_DENIED, a call without identity with UNAUTHENTICATED, and an unknown saga with NOT_FOUND", async () => {
    expect(await codeOf(client().getSaga({ id: orderId }, asCustomer()))).toBe("PermissionDenied");
    // Refused by the declared policy (LEVEL_ROLE admin) before the handler runs.
    await expect(client().getSaga({ id: orderId }, asCustomer())).rejects.toThrow("role admin required");
    expect(await codeOf(client().listSagas({}, asCustomer()))).toBe("PermissionDenied");
    expect(await codeOf(client().getSaga({ id: orderId }))).toBe("Unauthenticated");
    expect(await codeOf(client().getSaga({ id: uuidv7() }, asAdmin()))).toBe("NotFound");
    expect(await codeOf(client().getSaga({ id: "not-a-uuid" }, asAdmin()))).toBe("InvalidArgument");
  });
});
