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
  consumeForeignStream,
  createEventConsumer,
  deadLetterSubject,
  type EventConsumer,
  meshStreams,
  type StreamSpec,
} from "@meshwork/events";
import { createService, packageVersion, type Service } from "@meshwork/runtime";
import type { Logger, Telemetry } from "@meshwork/telemetry";
import { jetstream } from "@nats-io/jetstream";
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
 * Provisions the USERS, PAYMENTS and ORDERS streams (as their producers declare them) with this
 * service's durable consumer on each, and the consumers that turn their events into notifications.
 */
async function createConsumers(
  config: Config,
  nc: NatsConnection,
  database: DatabaseHandle<NotificationsSchema>,
  service: Service,
): Promise<EventConsumer[]> {
  const ns = config.events.namespace;
  // The same replicas as the producers declare them (STREAM_REPLICAS is set mesh-wide).
  const copies = { replicas: config.events.streamReplicas };
  const users = meshStreams.users(ns, copies);
  const payments = meshStreams.payments(ns, copies);
  const orders = meshStreams.orders(ns, copies);
  const deadLetters = meshStreams.deadLetters(ns, SERVICE, copies);
  const common = {
    js: jetstream(nc),
    database,
    inbox,
    durable: DURABLE,
    registry: createRegistry(
      file_meshwork_users_v1_events,
      file_meshwork_payments_v1_events,
      file_meshwork_orders_v1_events,
    ),
    maxDeliver: config.events.consumer.maxDeliver,
    backoffMs: config.events.consumer.backoffMs,
    deadLetterSubject: deadLetterSubject(ns, SERVICE, DURABLE),
    logger: service.logger,
    tracer: service.telemetry.tracer,
    meter: service.telemetry.meter,
  };
  // Each stream belongs to its producer: its consumer waits for it and never declares it.
  const foreign = (stream: StreamSpec, consumer: () => EventConsumer): EventConsumer =>
    consumeForeignStream({
      nc,
      stream,
      durable: DURABLE,
      ackWaitMs: config.events.consumer.ackWaitMs,
      deadLetters,
      logger: service.logger,
      consumer,
    });
  return [
    foreign(users, () =>
      createEventConsumer({
        ...common,
        stream: users.name,
        handlers: { "meshwork.users.v1.UserRegistered": onUserRegistered(service.logger) },
      }),
    ),
    foreign(payments, () =>
      createEventConsumer({
        ...common,
        stream: payments.name,
        handlers: { "meshwork.payments.v1.PaymentRefunded": onPaymentRefunded(service.logger) },
      }),
    ),
    foreign(orders, () =>
      createEventConsumer({
        ...common,
        stream: orders.name,
        // OrderPlaced is on the stream too: no handler, so it is acked and skipped.
        handlers: {
          "meshwork.orders.v1.OrderConfirmed": onOrderConfirmed(service.logger),
          "meshwork.orders.v1.OrderCancelled": onOrderCancelled(service.logger),
        },
      }),
    ),
  ];
}
