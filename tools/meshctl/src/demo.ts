import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { NotificationService } from "@meshwork/contracts/meshwork/notifications/v1/notifications";
import { OrderService, OrderStatus } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { checkConsistency } from "@meshwork/orders";
import { demoAdmin, demoAdminFile } from "./admin.js";

export interface DemoOptions {
  gateway: string;
  /** Where `up` keeps its state: the bootstrap secret, and the demo's own admin once created. */
  home: string;
  out: NodeJS.WritableStream;
}

const status = (s: OrderStatus | undefined) =>
  (OrderStatus[s ?? 0] ?? "unknown").toLowerCase().replace(/_/g, " ");

/**
 * Against a running mesh, through the gateway only: registers a customer and logs in, creates
 * products as the admin, places orders — two that go through, one that runs out of stock, one
 * that meets a payment failure switched on for it — follows each with WatchOrder, then prints
 * the customer's notifications and the consistency checker's verdict. Exit code 0 when the
 * outcomes are the expected ones and the checker finds nothing.
 */
export async function demo(options: DemoOptions): Promise<number> {
  const say = (line = "") => options.out.write(`${line}\n`);
  const edge = createGrpcTransport({ baseUrl: options.gateway });
  const users = createClient(UserService, edge);
  const inventory = createClient(InventoryService, edge);
  const payments = createClient(PaymentService, edge);
  const orders = createClient(OrderService, edge);
  const notifications = createClient(NotificationService, edge);

  const login = async (email: string, password: string, name: string) => {
    await users.registerUser({ email, password, displayName: name }).catch((err: unknown) => {
      if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
    });
    const res = await users.login({ email, password });
    return {
      id: res.user?.id ?? "",
      roles: res.user?.roles ?? [],
      auth: { headers: { authorization: `Bearer ${res.accessToken}` } },
    };
  };
  // No admin is built in: the demo makes its own through the bootstrap secret (as an operator
  // would with `meshctl admin create`), once, and keeps it owner-only for the next runs.
  const account = await demoAdmin(options.gateway, options.home);
  if (!account) {
    say(
      `no admin for the demo: ${demoAdminFile(options.home)} is missing and the bootstrap secret is spent (an admin exists); start from an empty .meshwork, or give the demo an admin's account in that file`,
    );
    return 1;
  }
  const admin = await login(account.email, account.password, "Demo admin");
  if (!admin.roles.includes("admin")) {
    say(`${account.email} has no admin role`);
    return 1;
  }
  say(
    `admin ${account.email} (created by the demo through the bootstrap secret, kept in ${demoAdminFile(options.home)})`,
  );
  const email = `customer-${randomUUID().slice(0, 8)}@example.com`;
  const customer = await login(email, "a demo password", "Demo customer");
  say(`customer ${email} (${customer.id}) logged in through ${options.gateway}`);

  const run = randomUUID().slice(0, 6);
  const product = async (name: string, priceMinor: bigint, stock: bigint) => {
    const { product } = await inventory.createProduct(
      {
        sku: `${name.toUpperCase()}-${run}`,
        name,
        price: { amountMinor: priceMinor, currency: "EUR" },
        initialStock: stock,
      },
      admin.auth,
    );
    say(`product ${name}: ${stock} in stock at ${(Number(priceMinor) / 100).toFixed(2)} EUR`);
    return product?.id ?? "";
  };
  const mug = await product("Mug", 1_200n, 10n);
  const poster = await product("Poster", 2_500n, 5n);
  const lamp = await product("Lamp", 4_900n, 1n);
  say();

  const place = async (label: string, items: Array<[string, number]>) => {
    const { order } = await orders.placeOrder(
      {
        idempotencyKey: randomUUID(),
        items: items.map(([productId, quantity]) => ({ productId, quantity: BigInt(quantity) })),
      },
      customer.auth,
    );
    const seen: string[] = [];
    let last = order;
    for await (const { order: o } of orders.watchOrder({ id: order?.id ?? "" }, customer.auth)) {
      seen.push(status(o?.status));
      last = o;
    }
    const outcome =
      last?.status === OrderStatus.CANCELLED ? `cancelled: ${last.cancelReason}` : status(last?.status);
    say(`${label}: ${seen.join(" -> ")}`);
    say(`  => ${outcome}`);
    return last?.status;
  };
  const outcomes = [
    await place("order 1 (2 mugs)", [[mug, 2]]),
    await place("order 2 (a poster and a mug)", [
      [poster, 1],
      [mug, 1],
    ]),
    await place("order 3 (2 lamps, 1 in stock)", [[lamp, 2]]),
  ];
  const healthy = { failureRate: 0, addedLatencyMs: 0, hardDown: false, declineAboveMinor: 1_000_000n };
  const before = (await payments.getFaults({}, admin.auth)).faults ?? healthy;
  await payments.setFaults({ faults: { ...before, hardDown: true } }, admin.auth);
  say("payments: provider switched to hard down for 3 s (a restart, say)");
  // Shorter than the saga's transient budget (SAGA_TRANSIENT_BUDGET_MS): the order waits, then
  // goes through once payments is back.
  const back = new Promise<void>((resolve) =>
    setTimeout(() => {
      payments
        .setFaults({ faults: before }, admin.auth)
        .then(() => say("payments: provider back"))
        .finally(resolve);
    }, 3_000),
  );
  try {
    outcomes.push(await place("order 4 (a poster, payments down for a moment)", [[poster, 1]]));
  } finally {
    await back;
  }
  say();

  // Notifications arrive through the event backbone: a welcome and one per finished order.
  const deadline = Date.now() + 15_000;
  let list = await notifications.listNotifications({ userId: customer.id }, customer.auth);
  while (list.notifications.length < 5 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    list = await notifications.listNotifications({ userId: customer.id }, customer.auth);
  }
  say(`notifications for ${email}:`);
  for (const n of [...list.notifications].reverse()) say(`  ${n.title}: ${n.body}`);
  say();

  const violations = await checkConsistency({ orders, inventory, payments, admin: admin.auth });
  for (const v of violations) say(`violation: ${v}`);
  say(
    violations.length === 0
      ? "checker: consistent (stock conserved, payments match orders)"
      : `checker: ${violations.length} violation(s)`,
  );
  const expected = [
    OrderStatus.CONFIRMED,
    OrderStatus.CONFIRMED,
    OrderStatus.CANCELLED,
    OrderStatus.CONFIRMED,
  ];
  return violations.length === 0 && outcomes.every((o, i) => o === expected[i]) ? 0 : 1;
}
