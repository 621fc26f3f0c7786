import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { createTelemetry } from "@meshwork/telemetry";
import { createTestDatabase, type TestDatabase, waitForLockWaiter } from "@meshwork/testing";
import { SpanKind } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../config.js";
import type { ProviderOperation } from "../provider/simulated-provider.js";
import { SimulatedProvider } from "../provider/simulated-provider.js";
import { createPaymentStore, type PaymentStore } from "./payment-store.js";
import { type PaymentsSchema, schema } from "./schema.js";

const migrations = fileURLToPath(new URL("../../../drizzle", import.meta.url));
const healthy = { failureRate: 0, addedLatencyMs: 0, hardDown: false, declineAboveMinor: 1_000_000 };

/** A provider whose captures wait at a gate the test opens: a capture still at the provider. */
class GatedProvider extends SimulatedProvider {
  gate: Promise<void> | undefined;
  arrived: (() => void) | undefined;
  override async call(op: ProviderOperation, paymentId: string, amountMinor = 0, signal?: AbortSignal) {
    if (op === "capture" && this.gate) {
      this.arrived?.();
      await this.gate;
    }
    return super.call(op, paymentId, amountMinor, signal);
  }
}

describe("a payment's transitions on the real Postgres", () => {
  let testDb: TestDatabase;
  let database: DatabaseHandle<PaymentsSchema>;
  let store: PaymentStore;
  const provider = new SimulatedProvider(healthy);
  /** The statements (CLIENT spans, one per statement the database handle runs) since the last reset. */
  const statements: string[] = [];
  const telemetry = createTelemetry({
    serviceName: "payments-store-test",
    spanProcessors: [
      {
        onStart: () => {},
        onEnd: (s) => {
          if (s.kind === SpanKind.CLIENT) statements.push(s.name);
        },
        forceFlush: async () => {},
        shutdown: async () => {},
      },
    ],
  });

  beforeAll(async () => {
    testDb = await createTestDatabase("pay_store");
    database = await openDatabase(loadConfig({ DATABASE_URL: testDb.url }).db, schema, { telemetry });
    await database.migrate(migrations);
    store = createPaymentStore(database.db, provider, "t.");
  });
  afterAll(async () => {
    await database?.close();
    await testDb?.drop();
    await telemetry.shutdown();
  });

  it("captures in one statement (the update locks and moves the row); again, and from another state, as before", async () => {
    const id = randomUUID();
    await store.authorize({ paymentId: id, userId: randomUUID(), amountMinor: 500, currency: "EUR" });
    statements.length = 0;
    const captured = await store.capture(id);
    // Was: a locking read, then the update.
    expect(statements).toEqual(["UPDATE payments"]);
    expect(captured).toMatchObject({ id, state: "captured", amountMinor: 500 });
    // Captured already: the payment as it is.
    expect(await store.capture(id)).toMatchObject({ id, state: "captured" });
    await expect(store.void(id)).rejects.toMatchObject({ name: "PaymentStateError", state: "captured" });
    await expect(store.capture(randomUUID())).rejects.toMatchObject({ name: "PaymentNotFoundError" });
    // A provider failure rolls the move back: still authorized, and a retry captures.
    const other = randomUUID();
    await store.authorize({ paymentId: other, userId: randomUUID(), amountMinor: 500, currency: "EUR" });
    provider.faults = { ...healthy, hardDown: true };
    await expect(store.capture(other)).rejects.toMatchObject({ name: "ProviderUnavailableError" });
    expect(await store.get(other)).toMatchObject({ state: "authorized" });
    provider.faults = healthy;
    expect(await store.capture(other)).toMatchObject({ state: "captured" });
  });

  it("a refund that comes while the capture is at the provider waits for it, and refunds", async () => {
    const gated = new GatedProvider(healthy);
    const gatedStore = createPaymentStore(database.db, gated, "t.");
    const id = randomUUID();
    await gatedStore.authorize({ paymentId: id, userId: randomUUID(), amountMinor: 700, currency: "EUR" });
    let open!: () => void;
    gated.gate = new Promise<void>((r) => {
      open = r;
    });
    const arrived = new Promise<void>((r) => {
      gated.arrived = r;
    });
    const capturing = gatedStore.capture(id);
    await arrived; // the row is locked and moved, not committed
    const refunding = gatedStore.refund(id).catch((e: unknown) => e);
    await waitForLockWaiter(testDb, "the refund waiting for the capture's lock");
    open();
    expect(await capturing).toMatchObject({ state: "captured" });
    // Was: PaymentNotFoundError (the update read "authorized" and did not wait; the reload did).
    expect(await refunding).toMatchObject({ id, state: "refunded" });
    expect(await gatedStore.get(id)).toMatchObject({ state: "refunded" });
  });
});
