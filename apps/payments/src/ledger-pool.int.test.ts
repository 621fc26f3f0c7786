import { randomUUID } from "node:crypto";
import { PaymentState } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { afterAll, describe, expect, it } from "vitest";
import { openTestPayments } from "../test/harness.js";

describe("payments on a Postgres server under a burst of calls", () => {
  const t = openTestPayments();
  afterAll(() => t.close());

  it("answers more concurrent payments than its pool has connections (the provider's ledger writes on a pool of its own)", {
    timeout: 120_000,
  }, async () => {
    const db = await t.database("mw_ledger_pool");
    const { client } = await t.start({ DATABASE_URL: db.url, DB_POOL_MAX: "2" });
    // What a restarted orders does when it resumes its sagas: many payments at once. Each holds a
    // pooled connection in its transaction while the provider's entry is written; through the
    // same pool of 2, the third payment onwards waited for a connection none gave back.
    const ids = Array.from({ length: 12 }, () => randomUUID());
    const authorized = await Promise.all(
      ids.map((paymentId) =>
        client.authorizePayment(
          { paymentId, userId: randomUUID(), amount: { amountMinor: 990n, currency: "EUR" } },
          { timeoutMs: 20_000 },
        ),
      ),
    );
    expect(authorized.map((r) => r.payment?.state)).toEqual(ids.map(() => PaymentState.AUTHORIZED));
    const captured = await Promise.all(
      ids.map((paymentId) => client.capturePayment({ paymentId }, { timeoutMs: 20_000 })),
    );
    expect(captured.map((r) => r.payment?.state)).toEqual(ids.map(() => PaymentState.CAPTURED));
    for (const paymentId of ids.slice(0, 3)) {
      const entries = (await client.getProviderLedger({ paymentId }, { timeoutMs: 20_000 })).entries;
      expect(entries.map((e) => e.operation)).toEqual(["authorize", "capture"]);
    }
  });
});
