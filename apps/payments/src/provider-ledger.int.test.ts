import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PaymentState } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { afterAll, describe, expect, it } from "vitest";
import { openTestPayments, type TestPayments } from "../test/harness.js";

/** The database of each run: a server database, or an embedded one in a fresh directory. */
const drivers = {
  postgres: async (t: TestPayments) => ({ DATABASE_URL: (await t.database("mw_ledger")).url }),
  pglite: async (t: TestPayments) => {
    const dir = await mkdtemp(join(tmpdir(), "mw-ledger-"));
    t.onClose(() => rm(dir, { recursive: true, force: true }));
    return { DATA_DIR: dir };
  },
};

describe.each(Object.keys(drivers) as Array<keyof typeof drivers>)(
  "the provider's ledger on %s",
  (driver) => {
    const t = openTestPayments();
    afterAll(() => t.close());

    it("survives a restart of payments, and a repeated call after it changes nothing", {
      timeout: 120_000,
    }, async () => {
      const env = await drivers[driver](t);
      const start = () => t.start(env);
      const paymentId = randomUUID();
      const first = await start();
      await first.client.authorizePayment({
        paymentId,
        userId: randomUUID(),
        amount: { amountMinor: 1_250n, currency: "EUR" },
      });
      await first.client.capturePayment({ paymentId });
      const before = (await first.client.getProviderLedger({ paymentId })).entries;
      expect(before.map((e) => [e.operation, e.amountMinor])).toEqual([
        ["authorize", 1_250n],
        ["capture", 0n],
      ]);
      await first.service.shutdown();

      const second = await start();
      try {
        expect((await second.client.getProviderLedger({ paymentId })).entries).toEqual(before);
        expect((await second.client.capturePayment({ paymentId })).payment?.state).toBe(
          PaymentState.CAPTURED,
        );
        expect((await second.client.getProviderLedger({ paymentId })).entries).toEqual(before);
        expect((await second.client.getProviderLedger({ paymentId: randomUUID() })).entries).toEqual([]);
      } finally {
        await second.service.shutdown();
      }
    });
  },
);
