import { describe, expect, it } from "vitest";
import type { Order } from "../../domain/order.js";
import { PermissionDeniedError } from "../../domain/order.js";
import type { OrderRepository } from "../../domain/ports.js";
import { listOrders } from "./list-orders.js";

const ADA = "0d7e6b7a-0000-4000-8000-000000000001";
const BOB = "0d7e6b7a-0000-4000-8000-000000000002";

/** A repository that records whose orders were asked for. */
function repository() {
  const asked: Array<string | undefined> = [];
  const orders = {
    listBefore: async (userId: string | undefined) => {
      asked.push(userId);
      return [] as Order[];
    },
  } as unknown as OrderRepository;
  return { orders, asked };
}

const base = { roles: [] as string[], allUsers: false, pageSize: 0, pageToken: "" };

describe("listOrders with a user named (the legacy REST path GET /api/users/{id}/orders)", () => {
  it("lists the caller's own orders when the path names the caller, or names no one", async () => {
    const { orders, asked } = repository();
    await listOrders({ orders }, { ...base, userId: ADA, ofUser: ADA });
    await listOrders({ orders }, { ...base, userId: ADA, ofUser: "" });
    expect(asked).toEqual([ADA, ADA]);
  });

  it("refuses another user's orders without the admin role, and lists them with it", async () => {
    const { orders, asked } = repository();
    await expect(listOrders({ orders }, { ...base, userId: ADA, ofUser: BOB })).rejects.toThrow(
      PermissionDeniedError,
    );
    expect(asked).toEqual([]);
    await listOrders({ orders }, { ...base, roles: ["admin"], userId: ADA, ofUser: BOB });
    expect(asked).toEqual([BOB]);
  });
});
