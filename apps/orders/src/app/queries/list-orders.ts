import { keysetTokens, pageSize } from "@meshwork/db";
import { type Order, PermissionDeniedError } from "../../domain/order.js";
import type { OrderRepository } from "../../domain/ports.js";

export interface ListOrdersInput {
  userId: string;
  roles: readonly string[];
  /** Every user's orders: needs the admin role. */
  allUsers: boolean;
  /** Only this user's orders (the legacy REST path's user); empty means the caller's. */
  ofUser?: string;
  /** 0 means the default; larger than the maximum is coerced to it. */
  pageSize: number;
  pageToken: string;
}

export interface OrderPage {
  orders: Order[];
  nextPageToken: string;
}

const pages = keysetTokens("o1:", "ListOrders");

/** Pages through the user's orders (or, for an admin, everyone's), newest first. */
export async function listOrders(
  deps: { orders: OrderRepository },
  input: ListOrdersInput,
): Promise<OrderPage> {
  const size = pageSize(input.pageSize);
  const before = input.pageToken ? pages.decode(input.pageToken) : undefined;
  if (input.allUsers && !input.roles.includes("admin")) {
    throw new PermissionDeniedError("all_users: needs the admin role");
  }
  const owner = input.ofUser || input.userId;
  if (!input.allUsers && owner !== input.userId && !input.roles.includes("admin")) {
    throw new PermissionDeniedError("user_id: another user's orders need the admin role");
  }
  const rows = await deps.orders.listBefore(input.allUsers ? undefined : owner, before, size + 1);
  const { items, nextPageToken } = pages.page(rows, size);
  return { orders: items, nextPageToken };
}
