/**
 * The JSON the monolith answers. Its shapes are the Meshwork contracts' messages in proto3 JSON
 * with the proto field names (snake_case), 64-bit integers as JSON numbers and every field
 * present: what the gateway's transcoder prints for the new services (README, "Moving off the
 * monolith"), so an old client sees one API whichever side answers.
 */
export interface Money {
  amount_minor: number;
  currency: string;
}

export interface ProductRow {
  id: string;
  sku: string;
  name: string;
  price_minor: string | number;
  currency: string;
  on_hand: string | number;
  created_at: Date;
}

export function productJson(p: ProductRow) {
  const onHand = Number(p.on_hand);
  return {
    id: p.id,
    sku: p.sku,
    name: p.name,
    price: { amount_minor: Number(p.price_minor), currency: p.currency.trim() },
    on_hand: onHand,
    // The monolith takes stock at once on an order: nothing is ever held.
    reserved: 0,
    available: onHand,
    create_time: p.created_at.toISOString(),
  };
}

export interface UserRow {
  id: string;
  email: string;
  display_name: string;
  roles: string[];
  created_at: Date;
}

export function userJson(u: UserRow) {
  return {
    id: u.id,
    email: u.email,
    display_name: u.display_name,
    roles: u.roles,
    create_time: u.created_at.toISOString(),
  };
}

export interface OrderRow {
  id: string;
  user_id: string;
  status: string;
  total_minor: string | number;
  currency: string;
  created_at: Date;
  updated_at: Date;
}

export interface OrderItemRow {
  product_id: string;
  quantity: string | number;
  unit_price_minor: string | number;
}

export function orderJson(o: OrderRow, items: readonly OrderItemRow[]) {
  const currency = o.currency.trim();
  return {
    id: o.id,
    user_id: o.user_id,
    items: items.map((i) => ({
      product_id: i.product_id,
      quantity: Number(i.quantity),
      unit_price: { amount_minor: Number(i.unit_price_minor), currency },
    })),
    total: { amount_minor: Number(o.total_minor), currency },
    status: o.status,
    cancel_reason: "",
    create_time: o.created_at.toISOString(),
    update_time: o.updated_at.toISOString(),
  };
}
