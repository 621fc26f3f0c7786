import { randomUUID } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { adminUrl, waitFor } from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestInventory, type TestInventory } from "./test-mesh.js";

describe("inventory when its database goes away", () => {
  let t: TestInventory;
  let admin: postgres.Sql;
  let client: ReturnType<typeof createClient<typeof InventoryService>>;

  beforeAll(async () => {
    t = await openTestInventory("mw_invdown");
    admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
    // No readiness check during the test: the answer must come from the failed query itself.
    const { url } = await t.start({ HEALTH_CHECK_INTERVAL_MS: "600000" });
    client = createClient(InventoryService, createGrpcTransport({ baseUrl: url }));
  });
  afterAll(async () => {
    await admin?.unsafe(`ALTER DATABASE "${t?.db.name}" ALLOW_CONNECTIONS true`).catch(() => {});
    await t?.close();
    await admin?.end();
  });

  const cutOff = async () => {
    await admin.unsafe(`ALTER DATABASE "${t.db.name}" ALLOW_CONNECTIONS false`);
    await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = ${t.db.name} and pid <> pg_backend_pid()`;
  };

  it("answers UNAVAILABLE (not INTERNAL) while its connections are cut, and normally once they are back", async () => {
    const { product } = await client.createProduct({
      sku: `SKU-${randomUUID().slice(0, 8)}`,
      name: "Thing",
      price: { amountMinor: 100n, currency: "EUR" },
      initialStock: 3n,
    });
    const id = product?.id ?? "";
    await cutOff();
    try {
      for (const call of [() => client.getProduct({ id }), () => client.listProducts({})]) {
        const err = await call().then(
          () => undefined,
          (e: unknown) => ConnectError.from(e),
        );
        expect(err?.code).toBe(Code.Unavailable);
        expect(err?.rawMessage).not.toMatch(/terminat|accepting|postgres/i);
      }
    } finally {
      await admin.unsafe(`ALTER DATABASE "${t.db.name}" ALLOW_CONNECTIONS true`);
    }
    const back = await waitFor(
      () =>
        client.getProduct({ id }).then(
          (r) => r.product,
          () => undefined,
        ),
      { what: "inventory answering again", timeoutMs: 15_000 },
    );
    expect(back).toMatchObject({ id, onHand: 3n });
  });

  it("keeps constraint errors what they are", async () => {
    const sku = `SKU-${randomUUID().slice(0, 8)}`;
    const create = () =>
      client.createProduct({ sku, name: "x", price: { amountMinor: 1n, currency: "EUR" } });
    await create();
    const dup = await create().then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(dup?.code).toBe(Code.AlreadyExists);
  });
});
