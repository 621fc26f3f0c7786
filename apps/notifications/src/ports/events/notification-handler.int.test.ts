import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { OrderConfirmedSchema } from "@meshwork/contracts/meshwork/orders/v1/events";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import type { BatchItem, EventContext } from "@meshwork/events";
import { createLogger, installTelemetryGlobals } from "@meshwork/telemetry";
import { createTestDatabase, type TestDatabase } from "@meshwork/testing";
import { ROOT_CONTEXT, TraceFlags, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { notifications, schema } from "../../adapters/db/schema.js";
import { onOrderConfirmed } from "./order-outcome.js";

const migrations = fileURLToPath(new URL("../../../drizzle", import.meta.url));
const USER = "0190a6f1-0000-7000-8000-000000000001";
const traceIdOf = (n: number) => `4bf92f3577b34da6a3ce929d0e0e${String(n).padStart(4, "0")}`;

describe("notification handlers (real Postgres)", () => {
  let testDb: TestDatabase;
  let database: DatabaseHandle<typeof schema>;

  beforeAll(async () => {
    installTelemetryGlobals(); // the context manager, so a log line sees its event's trace
    testDb = await createTestDatabase("mw_notif");
    database = await openDatabase(
      {
        url: testDb.url,
        dataDir: "",
        pool: { max: 2, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5 },
      },
      schema,
    );
    await database.migrate(migrations);
  });
  afterAll(async () => {
    await database?.close();
    await testDb?.drop();
  });

  const item = (n: number): BatchItem => {
    const event: EventContext = {
      id: `0190a6f1-0000-7000-8000-${String(n).padStart(12, "0")}`,
      type: "meshwork.orders.v1.OrderConfirmed",
      source: "/meshwork/orders",
      time: new Date(),
      subject: "meshwork.orders.v1.OrderConfirmed",
      deliveryCount: 1,
      publishTime: new Date(),
    };
    const message = create(OrderConfirmedSchema, {
      orderId: `order-${n}`,
      userId: USER,
      total: { amountMinor: 1250n, currency: "EUR" },
    });
    // Each event in a trace of its own, as if caused by a different request.
    const traceContext = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: traceIdOf(n),
      spanId: "00000000000000aa",
      traceFlags: TraceFlags.SAMPLED,
    });
    return { message, event, traceContext };
  };

  it("records the events that arrive together with one statement, a notification each, each logged in its trace", async () => {
    const lines: Array<Record<string, unknown>> = [];
    const handler = onOrderConfirmed(
      createLogger({
        service: "notifications",
        destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
      }),
    );
    const items = Array.from({ length: 30 }, (_, i) => item(i));
    let inserts = 0;
    await database.db.transaction(async (tx) => {
      const counting = new Proxy(tx, {
        get(target, prop, receiver) {
          if (prop === "insert") inserts++;
          return Reflect.get(target, prop, receiver);
        },
      });
      await handler.batch(items, counting);
    });
    expect(inserts).toBe(1);
    const rows = await database.db.select().from(notifications);
    expect(rows).toHaveLength(30);
    expect(new Set(rows.map((r) => r.id)).size).toBe(30);
    const byEvent = new Map(rows.map((r) => [r.eventId, r]));
    items.forEach((it, n) => {
      expect(byEvent.get(it.event.id)).toMatchObject({
        userId: USER,
        kind: "order.confirmed",
        title: "Order confirmed",
        body: `Your order order-${n} is confirmed and paid (€12.50).`,
      });
    });
    const logged = lines.filter((l) => l.msg === "notification recorded");
    expect(logged).toHaveLength(30);
    for (const [n, it] of items.entries()) {
      const line = logged.find((l) => l.event_id === it.event.id);
      expect(line?.trace_id).toBe(traceIdOf(n));
    }
  });
});
