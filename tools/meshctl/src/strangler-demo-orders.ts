import { randomBytes, randomUUID } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";

/** How long a mesh order may take to show up in legacy's own tables (the reverse sync). */
export const ORDER_SYNC_BOUND_MS = 10_000;
/** How long a user registered in legacy may take to reach the users service (the CDC). */
const USER_SYNC_BOUND_MS = 15_000;

export interface OrdersStepOptions {
  gateway: string;
  admin: string;
  /** Runs `meshctl strangler <args>` against this mesh. */
  cli: (...args: string[]) => Promise<number>;
  say: (line?: string) => void;
}

export interface OrdersStepResult {
  ok: boolean;
  /** Why not, when `ok` is false. */
  problems: string[];
}

interface Answer {
  side: string | null;
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: legacy's JSON answers, read field by field
  body: any;
}

async function call(gateway: string, method: string, path: string, token: string, body?: unknown) {
  const res = await fetch(`${gateway}${path}`, {
    method,
    headers: {
      // One sticky user: every request of this step lands on the same side at a given weight.
      cookie: "mw_sticky=demo-orders",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { side: res.headers.get("x-meshwork-side"), status: res.status, body: text ? JSON.parse(text) : {} };
}

async function until<T>(what: () => Promise<T | undefined>, boundMs: number): Promise<T | undefined> {
  for (const t = Date.now(); Date.now() - t < boundMs; await new Promise((r) => setTimeout(r, 100))) {
    const v = await what();
    if (v !== undefined) return v;
  }
  return undefined;
}

async function requests(admin: string, route: string): Promise<{ legacy: number; new: number }> {
  const all = (await (await fetch(`${admin}/strangler`)).json()) as {
    routes: Array<{ name: string; requests: { legacy: number; new: number } }>;
  };
  return all.routes.find((r) => r.name === route)?.requests ?? { legacy: 0, new: 0 };
}

/** Adds comparison rules to a route's (the gateway's defaults, such as `**.version`, stay). */
export async function addIgnore(admin: string, route: string, globs: string[]): Promise<void> {
  const state = (await (await fetch(`${admin}/strangler/routes/${route}`)).json()) as { ignore?: string[] };
  await fetch(`${admin}/strangler/routes/${route}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ignore: [...new Set([...(state.ignore ?? []), ...globs])] }),
  });
}

/** A customer of the monolith: registered and logged in through legacy's own API (its routes at 0%). */
async function legacyCustomer(o: OrdersStepOptions) {
  const email = `demo-customer-${randomBytes(4).toString("hex")}@example.com`;
  const password = randomBytes(12).toString("base64url");
  const made = await call(o.gateway, "POST", "/api/users", "", { email, password, display_name: "Demo" });
  const login = await call(o.gateway, "POST", "/api/login", "", { email, password });
  if (made.side !== "legacy" || made.status !== 200 || login.status !== 200) return undefined;
  return { id: made.body.id as string, token: login.body.access_token as string, email };
}

/** Waits until the users service knows the legacy customer (an exchange of a valid session is never a failure). */
async function synced(o: OrdersStepOptions, token: string): Promise<number | undefined> {
  const users = createClient(UserService, createGrpcTransport({ baseUrl: o.gateway }));
  const t = Date.now();
  const done = await until(
    () =>
      users.exchangeLegacyToken({ legacyToken: token }).then(
        () => true,
        () => undefined,
      ),
    USER_SYNC_BOUND_MS,
  );
  return done ? Date.now() - t : undefined;
}

/**
 * The orders' move, against the running mesh: a legacy customer, with the legacy session it has,
 * places an order with `POST /api/orders` at 100% (the mesh's saga places it; legacy's handler
 * gets none), the order shows up in legacy's own `GET /api/users/{id}/orders` (the reverse sync),
 * the shadowed `GET /api/orders/{id}` answers legacy's copy and the mesh's agree, and back at 0%
 * an order goes to legacy again.
 */
export async function ordersStep(o: OrdersStepOptions, productId: string): Promise<OrdersStepResult> {
  const problems: string[] = [];
  for (const r of ["RegisterUser", "Login", "PlaceOrder", "GetOrder", "ListOrders"])
    if ((await o.cli("set", r, "0")) !== 0) return { ok: false, problems: [`cannot set ${r} to 0%`] };
  const customer = await legacyCustomer(o);
  if (!customer) return { ok: false, problems: ["legacy did not register and log in a customer"] };
  o.say(`a legacy customer ${customer.email} registered and logged in at legacy (a legacy session)`);
  const userMs = await synced(o, customer.token);
  if (userMs === undefined) return { ok: false, problems: ["the customer never reached the users service"] };
  o.say(`the users service has them ${userMs} ms later (legacy -> users CDC)`);

  await o.cli("set", "PlaceOrder", "100");
  const before = await requests(o.admin, "PlaceOrder");
  const item = { product_id: productId, quantity: 1 };
  const placed: Answer = await call(o.gateway, "POST", "/api/orders", customer.token, {
    idempotency_key: randomUUID(),
    items: [item],
  });
  const legacySaw = (await requests(o.admin, "PlaceOrder")).legacy - before.legacy;
  const orderId = placed.body?.id as string | undefined;
  o.say(
    `POST /api/orders with the legacy session at 100% -> ${placed.status} from the ${placed.side} side, ` +
      `order ${orderId ?? "(none)"} ${placed.body?.status ?? ""}; legacy saw ${legacySaw} of them`,
  );
  if (placed.side !== "new" || placed.status !== 200 || !orderId || legacySaw !== 0)
    return { ok: false, problems: [`the order was not placed by the mesh: ${JSON.stringify(placed.body)}`] };

  const t = Date.now();
  const listed = await until(async () => {
    const l = await call(o.gateway, "GET", `/api/users/${customer.id}/orders`, customer.token);
    const found = (l.body.orders as Array<{ id: string; status: string }> | undefined)?.find(
      (x) => x.id === orderId,
    );
    return found && l.side === "legacy" ? found : undefined;
  }, ORDER_SYNC_BOUND_MS);
  if (!listed) problems.push(`the order is not in legacy's tables after ${ORDER_SYNC_BOUND_MS} ms`);
  else o.say(`legacy's GET /api/users/{id}/orders lists it ${Date.now() - t} ms later, ${listed.status}`);
  // The saga's end follows (OrderConfirmed or OrderCancelled): shown, not required.
  const ended = await until(async () => {
    const g = await call(o.gateway, "GET", `/api/orders/${orderId}`, customer.token);
    return g.body?.status && g.body.status !== "ORDER_STATUS_PENDING" ? (g.body.status as string) : undefined;
  }, ORDER_SYNC_BOUND_MS);
  o.say(
    `in legacy's tables ${ended ? `${ended} ${Date.now() - t} ms after it was placed` : "still PENDING"}`,
  );

  problems.push(...(await shadowRead(o, customer.token, orderId)));

  await o.cli("set", "PlaceOrder", "0");
  const back = await call(o.gateway, "POST", "/api/orders", customer.token, {
    idempotency_key: randomUUID(),
    items: [item],
  });
  o.say(`back at 0%: POST /api/orders -> ${back.status} from the ${back.side} side`);
  if (back.side !== "legacy" || back.status !== 200) problems.push("at 0% the order did not go to legacy");
  return { ok: problems.length === 0, problems };
}

/** `GET /api/orders/{id}` shadowed: the client gets legacy's answer, the mesh's is compared. */
async function shadowRead(o: OrdersStepOptions, token: string, orderId: string): Promise<string[]> {
  await fetch(`${o.admin}/strangler/routes/GetOrder/diffs`, { method: "DELETE" });
  await addIgnore(o.admin, "GetOrder", ["**.create_time", "**.update_time"]);
  await o.cli("shadow", "GetOrder", "on");
  const read = await call(o.gateway, "GET", `/api/orders/${orderId}`, token);
  o.say(`GET /api/orders/{id}, shadowed -> ${read.status} from the ${read.side} side, ${read.body?.status}`);
  const d = await until(async () => {
    const r = (await (await fetch(`${o.admin}/strangler/routes/GetOrder/diffs`)).json()) as {
      compared: number;
      differed: number;
    };
    return r.compared >= 1 ? r : undefined;
  }, 5_000);
  await o.cli("diffs", "GetOrder");
  await o.cli("shadow", "GetOrder", "off");
  const problems: string[] = [];
  if (read.side !== "legacy" || read.status !== 200)
    problems.push("the shadowed read was not legacy's answer");
  if (!d) problems.push("the shadowed read was never compared");
  else if (d.differed > 0) problems.push(`the mesh's GetOrder differed from legacy's ${d.differed} time(s)`);
  return problems;
}
