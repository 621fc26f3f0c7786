import { fileURLToPath } from "node:url";
import { createRegistry } from "@bufbuild/protobuf";
import {
  file_meshwork_notifications_v1_notifications,
  NotificationService,
} from "@meshwork/contracts/meshwork/notifications/v1/notifications";
import { file_meshwork_orders_v1_events } from "@meshwork/contracts/meshwork/orders/v1/events";
import { file_meshwork_payments_v1_events } from "@meshwork/contracts/meshwork/payments/v1/events";
import { file_meshwork_users_v1_events } from "@meshwork/contracts/meshwork/users/v1/events";
import { type DatabaseHandle, databaseServiceOptions, observeDatabasePool, openDatabase } from "@meshwork/db";
import { createDiscovery } from "@meshwork/discovery";
import {
  connectNats,
  createForeignConsumer,
  type EventConsumer,
  type ForeignConsumerSpec,
  meshStreams,
  type StreamSpec,
} from "@meshwork/events";
import { createService, packageVersion, type Service } from "@meshwork/runtime";
import type { Logger, Telemetry } from "@meshwork/telemetry";
import type { NatsConnection } from "@nats-io/transport-node";
import { createNotificationRepository } from "./adapters/db/notification-repository.js";
import { inbox, type NotificationsSchema, schema } from "./adapters/db/schema.js";
import type { Config } from "./config.js";
import { onOrderCancelled, onOrderConfirmed } from "./ports/events/order-outcome.js";
import { onPaymentRefunded } from "./ports/events/payment-refunded.js";
import { onUserRegistered } from "./ports/events/user-registered.js";
import { createNotificationServiceHandlers } from "./ports/rpc/notification-service.js";

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));
const VERSION = packageVersion(import.meta.url);
const SERVICE = "notifications";
const DURABLE = "notifications";

/**
 * Wires the notifications service: its database, ListNotifications, and durable consumers on
 * the USERS, PAYMENTS and ORDERS streams that turn each UserRegistered, PaymentRefunded,
 * OrderConfirmed and OrderCancelled into a notification, exactly once.
 */
export async function createNotificationsService(
  config: Config,
  observe: { logger?: Logger; telemetry?: Telemetry } = {},
): Promise<Service> {
  const database = await openDatabase(config.db, schema);
  const discovery = createDiscovery(config.discovery, { service: SERVICE, version: VERSION });
  let nc: NatsConnection | undefined;
  let consumers: EventConsumer[] = [];
  const service: Service = createService({
    name: SERVICE,
    version: VERSION,
    config: config.runtime,
    files: [file_meshwork_notifications_v1_notifications],
    services: [NotificationService],
    ...observe,
    routes(router) {
      router.service(
        NotificationService,
        createNotificationServiceHandlers({ notifications: createNotificationRepository(database.db) }),
      );
    },
    async prepare() {
      await database.migrate(migrationsFolder);
      observeDatabasePool(database, service.telemetry.meter);
      nc = await connectNats(config.events.natsUrl, SERVICE, config.events.natsCredentials);
      consumers = await createConsumers(config, nc, database, service);
      for (const c of consumers) await c.start();
    },
    ...databaseServiceOptions(database),
    announce: (where) => discovery.announce(where),
    async onShutdown() {
      await discovery.close();
      for (const c of consumers) await c.stop();
      await nc?.drain();
      await database.close();
    },
  });
  return service;
}

/**
 * This service's durable consumer on each of the USERS, PAYMENTS and ORDERS streams (declared by
 * their producers, never here), turning their events into notifications.
 */
async function createConsumers(
  config: Config,
  nc: NatsConnection,
  database: DatabaseHandle<NotificationsSchema>,
  service: Service,
): Promise<EventConsumer[]> {
  const ns = config.events.namespace;
  const registry = createRegistry(
    file_meshwork_users_v1_events,
    file_meshwork_payments_v1_events,
    file_meshwork_orders_v1_events,
  );
  const host = {
    service: SERVICE,
    config: config.events,
    nc,
    database,
    inbox,
    logger: service.logger,
    telemetry: service.telemetry,
  };
  // Each stream belongs to its producer: its consumer waits for it and never declares it.
  const foreign = (stream: StreamSpec, handlers: ForeignConsumerSpec["handlers"]): EventConsumer =>
    createForeignConsumer(host, {
      stream,
      durable: DURABLE,
      registry,
      handlers,
    });
  return [
    foreign(meshStreams.users(ns), { "meshwork.users.v1.UserRegistered": onUserRegistered(service.logger) }),
    foreign(meshStreams.payments(ns), {
      "meshwork.payments.v1.PaymentRefunded": onPaymentRefunded(service.logger),
    }),
    // OrderPlaced is on the stream too: no handler, so it is acked and skipped.
    foreign(meshStreams.orders(ns), {
      "meshwork.orders.v1.OrderConfirmed": onOrderConfirmed(service.logger),
      "meshwork.orders.v1.OrderCancelled": onOrderCancelled(service.logger),
    }),
  ];
}
