import { randomUUID } from "node:crypto";
import { eq } from "drizzle-orm";
import { v7 as uuidv7 } from "uuid";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestStore, placeTestOrder, type TestStore } from "../../../test/harness.js";
import { OrderStateError } from "../../domain/order.js";
import { orders } from "./schema.js";

describe("order store on Postgres: the checks before each saga step", () => {
  let t: TestStore;
  const user = randomUUID();

  beforeAll(async () => {
    t = await openTestStore("mw_ostore");
  });
  afterAll(() => t?.close());

  const place = () => placeTestOrder(t.store, user);
  const before = (id: string, step: string) =>
    t.handle.db.transaction((tx) => t.store.beforeStep(tx, id, step));
  const flags = async (id: string) =>
    (
      await t.handle.db
        .select({ captureStarted: orders.captureStarted, cancelRequested: orders.cancelRequested })
        .from(orders)
        .where(eq(orders.id, id))
    )[0];

  it("lets a step go on, and marks the order as being paid before the capture: no cancelling from then on", async () => {
    const id = await place();
    expect(await before(id, "authorize")).toBeUndefined();
    expect(await flags(id)).toEqual({ captureStarted: false, cancelRequested: false });
    expect(await before(id, "capture")).toBeUndefined();
    expect(await flags(id)).toEqual({ captureStarted: true, cancelRequested: false });
    await expect(t.store.requestCancel(user, id)).rejects.toThrow(OrderStateError);
    await expect(t.store.requestCancel(user, id)).rejects.toThrow(/is being paid/);
    // A retried capture step checks again and goes on.
    expect(await before(id, "capture")).toBeUndefined();
  });

  it("stops at the next step once a cancellation was asked for, and never marks it as being paid", async () => {
    const id = await place();
    await t.store.requestCancel(user, id);
    expect(await before(id, "authorize")).toBe("cancelled by the customer");
    expect(await before(id, "capture")).toBe("cancelled by the customer");
    expect(await flags(id)).toEqual({ captureStarted: false, cancelRequested: true });
  });

  it("sets the status of the steps done so far, once: a check run again keeps the order's last update", async () => {
    const id = await place();
    const read = async () =>
      (
        await t.handle.db
          .select({ status: orders.status, updatedAt: orders.updatedAt })
          .from(orders)
          .where(eq(orders.id, id))
      )[0];
    expect(await before(id, "reserve")).toBeUndefined();
    expect((await read())?.status).toBe("pending");
    expect(await before(id, "authorize")).toBeUndefined();
    const reserved = await read();
    expect(reserved?.status).toBe("stock_reserved");
    expect(await before(id, "authorize")).toBeUndefined(); // a retried step
    expect(await read()).toEqual(reserved);
    expect(await before(id, "capture")).toBeUndefined();
    expect((await read())?.status).toBe("payment_authorized");
  });

  it("says so for an order that does not exist", async () => {
    expect(await before(uuidv7(), "reserve")).toBe("the order no longer exists");
    expect(await before(uuidv7(), "capture")).toBe("the order no longer exists");
  });
});
