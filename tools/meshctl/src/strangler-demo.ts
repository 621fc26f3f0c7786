import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { demoAdmin, demoAdminFile } from "./admin.js";
import { stranglerCommand } from "./strangler.js";
import { addIgnore, ordersStep } from "./strangler-demo-orders.js";
import type { NatsTarget } from "./strangler-sync.js";

export interface StranglerDemoOptions {
  gateway: string;
  /** The gateway's admin (`http://127.0.0.1:9901`). */
  admin: string;
  home: string;
  /** For the backfill and the sync lag: the broker and the legacy database (as `meshctl up` leaves them). */
  nats?: NatsTarget;
  legacyDatabaseUrl?: string;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

interface LegacyProduct {
  id: string;
  sku: string;
  name: string;
  price: { amount_minor: number; currency: string };
  on_hand: number;
}

/**
 * The migration of the catalogue, against the running mesh: all traffic on legacy; the new
 * inventory loaded with legacy's catalogue; the catalogue shadowed and the diff report read; the
 * reads cut over (25%, then 100%); then the orders (a legacy customer's order placed by the mesh,
 * copied into legacy's tables, the shadowed read without a diff, back to legacy at 0%); then the
 * checker's verdict: legacy saw none of the catalogue's requests after the cutover, the new side
 * answered every one the same as legacy would, and the orders' step held.
 * Exit 0 when that holds.
 */
export async function stranglerDemo(options: StranglerDemoOptions): Promise<number> {
  const say = (line = "") => options.out.write(`${line}\n`);
  const cli = (...args: string[]) =>
    stranglerCommand(args, {
      admin: options.admin,
      gateway: options.gateway,
      nats: options.nats,
      legacyDatabaseUrl: options.legacyDatabaseUrl,
      out: options.out,
      err: options.err,
    });
  const rest = async (path: string, cookie: string) => {
    const res = await fetch(`${options.gateway}${path}`, { headers: { cookie: `mw_sticky=${cookie}` } });
    return {
      side: res.headers.get("x-meshwork-side"),
      status: res.status,
      body: (await res.json()) as Record<string, unknown>,
    };
  };
  const stats = async () =>
    (
      (await (await fetch(`${options.admin}/strangler`)).json()) as {
        routes: Array<{ name: string; requests: { legacy: number; new: number } }>;
      }
    ).routes.find((r) => r.name === "ListProducts")?.requests ?? { legacy: 0, new: 0 };

  say("== 1. The monolith answers the whole REST API");
  for (const r of ["ListProducts", "GetProduct"]) if ((await cli("set", r, "0")) !== 0) return 1;
  const legacyList = await rest("/api/products?page_size=100", "demo-0");
  if (legacyList.side !== "legacy") {
    options.err.write("the gateway has no legacy monolith configured (STRANGLER_LEGACY_URL)\n");
    return 1;
  }
  const catalogue = legacyList.body.products as LegacyProduct[];
  say(`GET /api/products -> ${catalogue.length} products, answered by legacy`);

  if (options.legacyDatabaseUrl && options.nats) {
    say("\n== 2. Backfill: the new inventory gets legacy's catalogue, then the CDC keeps it in sync");
    if ((await cli("backfill")) !== 0) return 1;
  } else if ((await copyThroughApi(options, catalogue, say)) !== 0) return 1;

  say("\n== 3. Shadow the catalogue: legacy answers, the new side's answer is compared");
  await fetch(`${options.admin}/strangler/routes/ListProducts/diffs`, { method: "DELETE" });
  const ignore = ["**.create_time", "**.update_time", "next_page_token", "message", "products.*.id"];
  await addIgnore(options.admin, "ListProducts", ignore);
  if ((await cli("shadow", "ListProducts", "on")) !== 0) return 1;
  for (let i = 0; i < 20; i++) await rest(`/api/products?page_size=${catalogue.length}`, `demo-${i}`);
  // The last comparisons finish after their answers: wait for all 20 (5 s at most).
  for (let t = Date.now(); Date.now() - t < 5_000; await new Promise((r) => setTimeout(r, 100))) {
    const d = (await (await fetch(`${options.admin}/strangler/routes/ListProducts/diffs`)).json()) as {
      compared: number;
    };
    if (d.compared >= 20) break;
  }
  await cli("diffs", "ListProducts");

  say("\n== 4. Cut the reads over: 25% of users, then everyone");
  await cli("shadow", "ListProducts", "off");
  await cli("set", "ListProducts", "25");
  const sides = await Promise.all(
    Array.from({ length: 40 }, (_, i) => rest(`/api/products?page_size=${catalogue.length}`, `user-${i}`)),
  );
  say(`40 users at 25%: ${sides.filter((s) => s.side === "new").length} on the new service`);
  await cli("set", "ListProducts", "100");
  const before = await stats();
  const after = await Promise.all(
    Array.from({ length: 40 }, (_, i) => rest(`/api/products?page_size=${catalogue.length}`, `user-${i}`)),
  );
  const now = await stats();
  await cli("status");

  say("\n== 5. Orders: cut the write over, shadow the reads, the order arrives in legacy");
  const product = catalogue.find((p) => p.on_hand > 0);
  const orders = product
    ? await ordersStep({ gateway: options.gateway, admin: options.admin, cli, say }, product.id)
    : { ok: false, problems: ["legacy has no product in stock"] };

  const legacySaw = now.legacy - before.legacy;
  const same = after.every(
    (a) =>
      a.status === 200 &&
      JSON.stringify((a.body.products as LegacyProduct[]).map((p) => [p.sku, p.price, p.on_hand])) ===
        JSON.stringify(catalogue.map((p) => [p.sku, p.price, p.on_hand])),
  );
  const ok = legacySaw === 0 && after.every((a) => a.side === "new") && same && orders.ok;
  say(
    `\nverdict: ${ok ? "OK" : "FAILED"}: at 100% legacy saw ${legacySaw} of ${after.length} catalogue requests; ` +
      `the new service's answers ${same ? "match" : "do NOT match"} legacy's catalogue; ` +
      (orders.ok
        ? "orders: placed by the mesh with a legacy session, in legacy's tables, no diff on GetOrder, back on legacy at 0%"
        : `orders: ${orders.problems.join("; ")}`),
  );
  return ok ? 0 : 1;
}

/** Without the legacy database at hand (a mesh not started by `meshctl up`): copy through inventory's API. */
async function copyThroughApi(
  options: StranglerDemoOptions,
  catalogue: LegacyProduct[],
  say: (line?: string) => void,
): Promise<number> {
  say("\n== 2. Backfill: the new inventory gets legacy's catalogue (through its API, as an admin)");
  const account = await demoAdmin(options.gateway, options.home);
  if (!account) {
    options.err.write(
      `no admin: the bootstrap secret is gone and ${demoAdminFile(options.home)} does not exist\n`,
    );
    return 1;
  }
  const edge = createGrpcTransport({ baseUrl: options.gateway });
  const { accessToken } = await createClient(UserService, edge).login(account);
  const inventory = createClient(InventoryService, edge);
  const have = new Set<string>();
  for (let token = ""; ; ) {
    const page = await inventory.listProducts({ pageSize: 100, pageToken: token });
    for (const p of page.products) have.add(p.sku);
    token = page.nextPageToken;
    if (!token) break;
  }
  let copied = 0;
  for (const p of catalogue) {
    if (have.has(p.sku)) continue;
    await inventory
      .createProduct(
        {
          sku: p.sku,
          name: p.name,
          price: { amountMinor: BigInt(p.price.amount_minor), currency: p.price.currency },
          initialStock: BigInt(p.on_hand),
        },
        { headers: { authorization: `Bearer ${accessToken}` } },
      )
      .then(
        () => copied++,
        (err: unknown) => {
          if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
        },
      );
  }
  say(`${copied} products copied (${catalogue.length - copied} were there already)`);
  return 0;
}
