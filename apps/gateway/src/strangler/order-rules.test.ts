import { describe, expect, it } from "vitest";
import { diffJson } from "./diff.js";
import { DEFAULT_IGNORE } from "./strangler.js";

const P1 = "5d1c0a7e-0000-4000-8000-000000000001";
const P2 = "5d1c0a7e-0000-4000-8000-000000000002";

function order(status: string, items = [P1, P2], extra: Record<string, unknown> = {}) {
  return {
    id: "0d7e6b7a-0000-4000-8000-0000000000aa",
    user_id: "0d7e6b7a-0000-4000-8000-000000000001",
    items: items.map((id, n) => ({
      product_id: id,
      quantity: n + 1,
      unit_price: { amount_minor: 100 * (n + 1), currency: "EUR" },
    })),
    total: { amount_minor: 500, currency: "EUR" },
    status,
    cancel_reason: "",
    create_time: "2026-12-06T20:00:00.000Z",
    update_time: "2026-12-06T20:00:00.000Z",
    ...extra,
  };
}

describe("the orders routes' comparison rules", () => {
  it("takes the mesh's in-flight saga states as legacy's CONFIRMED (and legacy's lagging copy as the mesh's)", () => {
    for (const next of [
      "ORDER_STATUS_PENDING",
      "ORDER_STATUS_STOCK_RESERVED",
      "ORDER_STATUS_PAYMENT_AUTHORIZED",
    ]) {
      expect(diffJson(order("ORDER_STATUS_CONFIRMED"), order(next), DEFAULT_IGNORE)).toEqual([]);
    }
    expect(diffJson(order("ORDER_STATUS_PENDING"), order("ORDER_STATUS_CONFIRMED"), DEFAULT_IGNORE)).toEqual(
      [],
    );
    // In a list too.
    const list = (s: string) => ({ orders: [order(s)], next_page_token: "" });
    expect(diffJson(list("ORDER_STATUS_CONFIRMED"), list("ORDER_STATUS_PENDING"), DEFAULT_IGNORE)).toEqual(
      [],
    );
  });

  it("reports a cancelled order against a confirmed or running one, and any other planted field", () => {
    expect(
      diffJson(order("ORDER_STATUS_CONFIRMED"), order("ORDER_STATUS_CANCELLED"), DEFAULT_IGNORE),
    ).toEqual([{ path: "status", legacy: "ORDER_STATUS_CONFIRMED", new: "ORDER_STATUS_CANCELLED" }]);
    expect(
      diffJson(order("ORDER_STATUS_CANCELLED"), order("ORDER_STATUS_PENDING"), DEFAULT_IGNORE),
    ).toHaveLength(1);
    const planted = order("ORDER_STATUS_PENDING", [P1, P2], {
      total: { amount_minor: 501, currency: "EUR" },
    });
    expect(diffJson(order("ORDER_STATUS_CONFIRMED"), planted, DEFAULT_IGNORE)).toEqual([
      { path: "total.amount_minor", legacy: 500, new: 501 },
    ]);
    // Legacy has no cancel reason; the mesh's is not a difference, a reason only legacy has is.
    const why = { cancel_reason: "payment declined: card" };
    expect(
      diffJson(
        order("ORDER_STATUS_CANCELLED"),
        order("ORDER_STATUS_CANCELLED", [P1, P2], why),
        DEFAULT_IGNORE,
      ),
    ).toEqual([]);
    expect(
      diffJson(
        order("ORDER_STATUS_CANCELLED", [P1, P2], why),
        order("ORDER_STATUS_CANCELLED"),
        DEFAULT_IGNORE,
      ),
    ).toHaveLength(1);
    // Only order statuses map: another field named status compares as it is.
    expect(diffJson({ status: "SERVING" }, { status: "NOT_SERVING" }, [])).toHaveLength(1);
  });

  it("compares an order's items by product id, whichever order each side lists them in", () => {
    const legacy = order("ORDER_STATUS_CONFIRMED", [P1, P2]);
    const mesh = { ...legacy, items: [...legacy.items].reverse() };
    expect(diffJson(legacy, mesh, DEFAULT_IGNORE)).toEqual([]);
    mesh.items = [{ ...legacy.items[1]!, quantity: 9 }, legacy.items[0]!];
    expect(diffJson(legacy, mesh, DEFAULT_IGNORE)).toEqual([
      { path: "items[1].quantity", legacy: 2, new: 9 },
    ]);
    // Other arrays still compare by position.
    expect(diffJson({ products: [1, 2] }, { products: [2, 1] }, [])).toHaveLength(2);
  });

  it("compares times as instants: legacy's milliseconds against proto3 JSON's shortest form (an old legacy order)", () => {
    const at = (t: string) => order("ORDER_STATUS_CONFIRMED", [P1, P2], { create_time: t, update_time: t });
    expect(diffJson(at("2024-01-15T09:09:00.000Z"), at("2024-01-15T09:09:00Z"), [])).toEqual([]);
    expect(diffJson(at("2024-01-15T09:09:00.120Z"), at("2024-01-15T09:09:00.120Z"), [])).toEqual([]);
    expect(diffJson(at("2024-01-15T09:09:00.120Z"), at("2024-01-15T09:09:00.120000Z"), [])).toEqual([]);
    expect(diffJson(at("2024-01-15T09:09:00.000Z"), at("2024-01-15T09:09:01Z"), [])).toEqual([
      { path: "create_time", legacy: "2024-01-15T09:09:00.000Z", new: "2024-01-15T09:09:01Z" },
      { path: "update_time", legacy: "2024-01-15T09:09:00.000Z", new: "2024-01-15T09:09:01Z" },
    ]);
    // Only times: other strings compare as they are.
    expect(diffJson({ sku: "2024" }, { sku: "2024.0" }, [])).toHaveLength(1);
  });
});
