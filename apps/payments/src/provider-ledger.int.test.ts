import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

/** The database of each run: a server database, or an embedded one in a fresh directory. */
const drivers = {
  postgres: async () => {
    const db = await createTestDatabase("mw_ledger");
    return { env: { DATABASE_URL: db.url }, drop: () => db.drop() };
  },
  pglite: async () => {
    const dir = await mkdtemp(join(tmpdir(), "mw-ledger-"));
    return { env: { DATA_DIR: dir }, drop: () => rm(dir, { recursive: true, force: true }) };
  },
};

describe.each(Object.keys(drivers) as Array<keyof typeof drivers>)(
  "the provider's ledger on %s",
  (driver) => {
    const namespace = `${uniqueName("t")}.`;
    const cleanup: Array<() => Promise<unknown>> = [];
    afterAll(async () => {
      for (const c of cleanup.reverse()) await c();
      const nc = await connectNats(natsUrl, "ledger-test-cleanup");
      await (await jetstreamManager(nc)).streams.delete(streamName(namespace, "PAYMENTS")).catch(() => {});
      await nc.close();
    });

    it("survives a restart of payments, and a repeated call after it changes nothing", {
      timeout: 120_000,
    }, async () => {
      const database = await drivers[driver]();
      cleanup.push(database.drop);
      const start = async () => {
        const service: Service = await createPaymentsService(
          loadConfig({
            PORT: "0",
            LOG_LEVEL: "silent",
            DISCOVERY: "static",
            EVENTS_NAMESPACE: namespace,
            NATS_URL: natsUrl,
            ...database.env,
          }),
        );
        const { url } = await service.start();
        return { service, client: createClient(PaymentService, createGrpcTransport({ baseUrl: url })) };
      };
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
