import { randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PaymentService, PaymentState } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { connectNats, streamName } from "@meshwork/events";
import type { Service } from "@meshwork/runtime";
import { createTestDatabase, uniqueName } from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig } from "./config.js";
import { createPaymentsService } from "./server.js";

const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

describe("payments on a Postgres server under a burst of calls", () => {
  const namespace = `${uniqueName("t")}.`;
  const cleanup: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const c of cleanup.reverse()) await c();
    const nc = await connectNats(natsUrl, "ledger-pool-test-cleanup");
    await (await jetstreamManager(nc)).streams.delete(streamName(namespace, "PAYMENTS")).catch(() => {});
    await nc.close();
  });

  it("answers more concurrent payments than its pool has connections (the provider's ledger writes on a pool of its own)", {
    timeout: 120_000,
  }, async () => {
    const db = await createTestDatabase("mw_ledger_pool");
    cleanup.push(() => db.drop());
    const service: Service = await createPaymentsService(
      loadConfig({
        PORT: "0",
        LOG_LEVEL: "silent",
        DISCOVERY: "static",
        EVENTS_NAMESPACE: namespace,
        NATS_URL: natsUrl,
        DATABASE_URL: db.url,
        DB_POOL_MAX: "2",
      }),
    );
    cleanup.push(() => service.shutdown());
    const { url } = await service.start();
    const client = createClient(PaymentService, createGrpcTransport({ baseUrl: url }));
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
