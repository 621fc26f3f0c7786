import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { connectNats, streamName } from "@meshwork/events";
import type { Service } from "@meshwork/runtime";
import { createTestDatabase, type TestDatabase, uniqueName } from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import type { SimulatedProvider } from "../src/adapters/provider/simulated-provider.js";
import { type Config, loadConfig } from "../src/config.js";
import { createPaymentsService } from "../src/server.js";

export const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

/** A payments instance a test started, with a gRPC client of it. */
export interface TestPaymentsInstance {
  service: Service;
  url: string;
  client: ReturnType<typeof createClient<typeof PaymentService>>;
}

/** One suite's payments: an events namespace of its own, its databases and its instances. */
export interface TestPayments {
  namespace: string;
  /** A fresh database on the real Postgres (`<prefix>_<hex>`), dropped by `close()`. */
  database(prefix: string): Promise<TestDatabase>;
  /**
   * Starts a payments instance (port 0, static discovery, silent) in this namespace; `env` names
   * its database (`DATABASE_URL` or `DATA_DIR`) and anything else. `provider` builds the
   * provider from the parsed config when the test wants to look at its holds.
   */
  start(
    env: Record<string, string>,
    provider?: (config: Config) => SimulatedProvider,
  ): Promise<TestPaymentsInstance>;
  /** Runs `cleanup` at `close()` (before the databases are dropped). */
  onClose(cleanup: () => Promise<unknown>): void;
  /** Shuts every instance down, deletes the namespace's PAYMENTS stream, drops the databases. */
  close(): Promise<void>;
}

/** For tests: a payments suite's namespace, databases and instances, removed by `close()`. */
export function openTestPayments(): TestPayments {
  const namespace = `${uniqueName("t")}.`;
  const services: Service[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  const drops: Array<() => Promise<unknown>> = [];
  return {
    namespace,
    async database(prefix) {
      const db = await createTestDatabase(prefix);
      drops.push(() => db.drop());
      return db;
    },
    async start(env, provider) {
      const config = loadConfig({
        PORT: "0",
        LOG_LEVEL: "silent",
        DISCOVERY: "static",
        EVENTS_NAMESPACE: namespace,
        NATS_URL: natsUrl,
        ...env,
      });
      const service = await createPaymentsService(config, {}, provider?.(config));
      services.push(service);
      const { url } = await service.start();
      return { service, url, client: createClient(PaymentService, createGrpcTransport({ baseUrl: url })) };
    },
    onClose(cleanup) {
      cleanups.push(cleanup);
    },
    async close() {
      for (const s of services) await s.shutdown();
      for (const c of cleanups.reverse()) await c();
      const nc = await connectNats(natsUrl, "payments-test-cleanup");
      try {
        await (await jetstreamManager(nc)).streams.delete(streamName(namespace, "PAYMENTS")).catch(() => {});
      } finally {
        await nc.close();
      }
      for (const d of drops) await d();
    },
  };
}
