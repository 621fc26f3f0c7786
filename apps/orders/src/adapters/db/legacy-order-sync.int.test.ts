import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { OrderChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { eq } from "drizzle-orm";
import { v7 as uuidv7 } from "uuid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestStore, startPlacementRow, type TestStore } from "../../../test/harness.js";
import { applyLegacyOrder } from "./legacy-order-sync.js";
import { orders, outbox, sagas } from "./schema.js";

// Legacy's captured orders applied to the orders service's own database (strangler fig, issue 19).
const kettle = "5d1c0a7e-0000-4000-8000-000000000001";
const mug = "5d1c0a7e-0000-4000-8000-000000000003";

describe("legacy orders applied to the orders database", () => {
  let t: TestStore;

  beforeAll(async () => {
    t = await openTestStore("mw_olegacy");
  });
  afterAll(() => t?.close());

  const changed = (
    id: string,
    user: string,
    sequence: number,
    o: { status?: string; key?: string; at?: Date } = {},
  ) =>
    create(OrderChangedSchema, {
      orderId: id,
      sequence: BigInt(sequence),
      userId: user,
      idempotencyKey: o.key ?? `client-key-${id}`,
      status: o.status ?? "ORDER_STATUS_CONFIRMED",
      total: { amountMinor: 2999n + 2n * 899n, currency: "EUR" },
      items: [
        { productId: mug, quantity: 2n, unitPriceMinor: 899n },
        { productId: kettle, quantity: 1n, unitPriceMinor: 2999n },
      ],
      createTime: timestampFromDate(o.at ?? new Date("2024-01-15T09:09:00.000Z")),
      updateTime: timestampFromDate(o.at ?? new Date("2024-01-15T09:09:00.000Z")),
    });
  const apply = (e: ReturnType<typeof changed>) => t.handle.db.transaction((tx) => applyLegacyOrder(tx, e));

  it("stores a legacy order under its id as it is (terminal, lines by product), with no saga and no event", async () => {
    const user = randomUUID();
    const id = randomUUID();
    const events = (await t.handle.db.select().from(outbox)).length;
    expect(await apply(changed(id, user, 10))).toBe("created");
    const order = await t.store.get(user, id);
    expect(order).toMatchObject({
      id,
      userId: user,
      status: "confirmed",
      totalMinor: 2999 + 2 * 899,
      currency: "EUR",
      cancelReason: null,
      items: [
        { productId: kettle, quantity: 1, unitPriceMinor: 2999 },
        { productId: mug, quantity: 2, unitPriceMinor: 899 },
      ],
    });
    expect(order.createdAt.toISOString()).toBe("2024-01-15T09:09:00.000Z");
    // Legacy's key: a repeat of the client's PlaceOrder on the mesh finds this order.
    expect((await t.store.findByKey(user, `client-key-${id}`))?.id).toBe(id);
    expect(await t.handle.db.select().from(sagas).where(eq(sagas.id, id))).toHaveLength(0);
    expect(await t.handle.db.select().from(outbox)).toHaveLength(events);
  });

  it("is idempotent and order-proof: repeats and older captures change nothing, a newer one applies", async () => {
    const user = randomUUID();
    const id = randomUUID();
    expect(await apply(changed(id, user, 20))).toBe("created");
    expect(await apply(changed(id, user, 20))).toBe("stale");
    expect(await apply(changed(id, user, 19, { status: "ORDER_STATUS_CANCELLED" }))).toBe("stale");
    expect((await t.store.get(user, id)).status).toBe("confirmed");
    expect(await apply(changed(id, user, 21, { status: "ORDER_STATUS_CANCELLED" }))).toBe("updated");
    expect((await t.store.get(user, id)).status).toBe("cancelled");
    const rows = await t.handle.db.select().from(orders).where(eq(orders.id, id));
    expect(rows).toHaveLength(1);
  });

  it("leaves an order the mesh placed alone, and refuses a status it cannot hold without a saga", async () => {
    const user = randomUUID();
    const { order } = await t.store.place(
      {
        id: uuidv7(),
        userId: user,
        idempotencyKey: "mesh-placed",
        requestHash: "h",
        items: [{ productId: kettle, quantity: 1, unitPriceMinor: 2999 }],
        totalMinor: 2999,
        currency: "EUR",
      },
      startPlacementRow,
    );
    expect(await apply(changed(order.id, user, 30))).toBe("mesh-owned");
    expect((await t.store.get(user, order.id)).status).toBe("pending");
    // A legacy order whose key one of the user's mesh orders already has keeps a key of its own.
    const clash = randomUUID();
    expect(await apply(changed(clash, user, 31, { key: "mesh-placed" }))).toBe("created");
    expect((await t.store.findByKey(user, "mesh-placed"))?.id).toBe(order.id);
    await expect(apply(changed(randomUUID(), user, 32, { status: "ORDER_STATUS_PENDING" }))).rejects.toThrow(
      /status "ORDER_STATUS_PENDING": only ORDER_STATUS_CONFIRMED or ORDER_STATUS_CANCELLED/,
    );
  });

  it("lists legacy orders (random ids) among mesh orders newest first by creation time, across pages", async () => {
    const user = randomUUID();
    const at = (m: number) => new Date(Date.UTC(2024, 0, 15, 9, m));
    // Legacy ids are UUIDv4: their order says nothing of when they were placed.
    const ids = ["f", "0", "8"].map((c) => `${c}${randomUUID().slice(1)}`);
    for (const [n, id] of ids.entries()) await apply(changed(id, user, 40 + n, { at: at(n) }));
    const mesh = await t.store.place(
      {
        id: uuidv7(),
        userId: user,
        idempotencyKey: "newest",
        requestHash: "h",
        items: [{ productId: kettle, quantity: 1, unitPriceMinor: 2999 }],
        totalMinor: 2999,
        currency: "EUR",
      },
      startPlacementRow,
    );
    const expected = [mesh.order.id, ids[2], ids[1], ids[0]];
    const first = await t.store.listBefore(user, undefined, 2);
    const second = await t.store.listBefore(user, first.at(-1)?.id, 2);
    expect([...first, ...second].map((o) => o.id)).toEqual(expected);
  });
});
