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
  else problems.push(...(await legacyOrderOnMesh(o, customer, back.body.id as string)));
  return { ok: problems.length === 0, problems };
}

const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

/** Legacy prints `09:09:00.000Z`, proto3 JSON `09:09:00Z`: the same instant (README, the orders move). */
const sameInstant = (a: unknown, b: unknown) =>
  typeof a === "string" &&
  typeof b === "string" &&
  RFC3339_UTC.test(a) &&
  RFC3339_UTC.test(b) &&
  Date.parse(a) === Date.parse(b);

/** The first path where two JSON values differ ("" when they are equal; times as instants). */
export function firstDifference(a: unknown, b: unknown, path = ""): string {
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null)
    return a === b || sameInstant(a, b) ? "" : `${path || "."}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) {
    const d = firstDifference(
      (a as Record<string, unknown>)[k],
      (b as Record<string, unknown>)[k],
      `${path}.${k}`,
    );
    if (d) return d;
  }
  return "";
}

/** A route's answer at 0% (legacy) and at 100% (the new side), for the one sticky demo user. */
async function bothSides(o: OrdersStepOptions, route: string, path: string, token: string) {
  await o.cli("set", route, "0");
  const legacy = await call(o.gateway, "GET", path, token);
  await o.cli("set", route, "100");
  const mesh = await call(o.gateway, "GET", path, token);
  await o.cli("set", route, "0");
  return { legacy, mesh };
}

/**
 * An order placed in legacy reaches the orders service (legacy -> orders CDC: under its legacy
 * id, no saga), and the cut-over GetOrder and ListOrders answer it exactly as legacy does (times
 * included), the shadowed GetOrder without a difference.
 */
async function legacyOrderOnMesh(
  o: OrdersStepOptions,
  customer: { id: string; token: string },
  orderId: string,
): Promise<string[]> {
  const problems: string[] = [];
  const path = `/api/orders/${orderId}`;
  await o.cli("set", "GetOrder", "100");
  const t = Date.now();
  const there = await until(async () => {
    const g = await call(o.gateway, "GET", path, customer.token);
    return g.side === "new" && g.status === 200 ? g : undefined;
  }, ORDER_SYNC_BOUND_MS);
  if (!there)
    return [`legacy's order ${orderId} is not in the orders service after ${ORDER_SYNC_BOUND_MS} ms`];
  o.say(
    `legacy's order ${orderId} is in the orders service ${Date.now() - t} ms later (legacy -> orders CDC)`,
  );
  const got = await bothSides(o, "GetOrder", path, customer.token);
  const getDiff = firstDifference(got.legacy.body, got.mesh.body);
  o.say(
    `GET /api/orders/{id}: legacy and the new side answer ${getDiff ? `differently (${getDiff})` : "the same"}`,
  );
  if (getDiff || got.mesh.side !== "new") problems.push(`GetOrder of a legacy order differs: ${getDiff}`);
  const listed = await bothSides(o, "ListOrders", `/api/users/${customer.id}/orders`, customer.token);
  type Listed = { id: string };
  const ids = (a: Answer) => ((a.body.orders ?? []) as Listed[]).map((x) => x.id);
  const entry = (a: Answer) => ((a.body.orders ?? []) as Listed[]).find((x) => x.id === orderId);
  const listDiff = firstDifference(entry(listed.legacy), entry(listed.mesh));
  o.say(
    `GET /api/users/{id}/orders: ${ids(listed.mesh).length} orders on the new side in legacy's order ` +
      `(${ids(listed.mesh).join(", ") === ids(listed.legacy).join(", ") ? "same" : "NOT the same"}), ` +
      `the legacy order ${listDiff ? `differs (${listDiff})` : "the same"}`,
  );
  if (listDiff || !entry(listed.mesh))
    problems.push(`ListOrders' copy of a legacy order differs: ${listDiff}`);
  if (ids(listed.mesh).join() !== ids(listed.legacy).join())
    problems.push(`ListOrders lists ${ids(listed.mesh)} on the new side, legacy ${ids(listed.legacy)}`);
  problems.push(...(await shadowRead(o, customer.token, orderId)));
  return problems;
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
