import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { deleteNamespaceStreams } from "@meshwork/events/testing";
import { SEED } from "@meshwork/legacy";
import { testIdentity } from "@meshwork/runtime/testing";
import {
  createTestDatabase,
  type ManagedProcess,
  startProcess,
  type TestDatabase,
  uniqueName,
  waitFor,
} from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../config.js";
import { createGateway, type Gateway } from "../gateway.js";
import { DEFAULT_IGNORE } from "./strangler.js";

const legacyMain = fileURLToPath(new URL("../../../legacy/dist/main.js", import.meta.url));
const inventoryMain = fileURLToPath(new URL("../../../inventory/dist/main.js", import.meta.url));

interface Answer {
  status: number;
  side: string | null;
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers read in assertions
  body: any;
  text: string;
}

describe("the strangler fig at the gateway (real legacy, inventory and gateway processes, real Postgres)", () => {
  const identity = testIdentity(["gateway"]);
  let legacyDb: TestDatabase;
  let inventoryDb: TestDatabase;
  let legacy: ManagedProcess;
  let inventory: ManagedProcess;
  const namespace = `${uniqueName("t")}.`;
  let legacyUrl: string;
  let gateway: Gateway;
  let url: string;
  let adminUrl: string;
  /** Inventory's ids of the legacy catalogue, by SKU. */
  const newIds = new Map<string, string>();

  const get = async (path: string, headers: Record<string, string> = {}, base = url): Promise<Answer> => {
    const res = await fetch(`${base}${path}`, { headers });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // kept as text
    }
    return { status: res.status, side: res.headers.get("x-meshwork-side"), body, text };
  };
  const admin = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${adminUrl}${path}`, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    // biome-ignore lint/suspicious/noExplicitAny: JSON answers read in assertions
    return { status: res.status, body: (await res.json()) as any };
  };
  const set = async (route: string, patch: Record<string, unknown>) => {
    const r = await admin("POST", `/strangler/routes/${route}`, patch);
    expect(r.status).toBe(200);
    return r.body;
  };
  /** Requests the monolith logged for `path` (Fastify logs each one it receives). */
  const legacySaw = (path: string) =>
    legacy.logs().filter((l) => l.msg === "incoming request" && (l.req as { url?: string })?.url === path)
      .length;

  beforeAll(async () => {
    [legacyDb, inventoryDb] = await Promise.all([
      createTestDatabase("mw_strl"),
      createTestDatabase("mw_stri"),
    ]);
    legacy = startProcess(process.execPath, [legacyMain], {
      env: { DATABASE_URL: legacyDb.url, PORT: "0", LEGACY_TOKEN_SECRET: "s".repeat(40) },
    });
    inventory = startProcess(process.execPath, [inventoryMain], {
      env: {
        DATABASE_URL: inventoryDb.url,
        PORT: "0",
        DISCOVERY: "static",
        IDENTITY_TRUST: identity.trustText,
        // Its streams in a namespace of this suite's (removed after), and no shared cache tier:
        // the default namespace's INVENTORY stream and cache bucket on the shared NATS are no test's.
        EVENTS_NAMESPACE: namespace,
        CACHE_SHARED: "none",
      },
    });
    const [l, i] = await Promise.all([
      legacy.waitForLog((x) => x.msg === "listening"),
      inventory.waitForLog((x) => x.msg === "listening"),
    ]);
    legacyUrl = `http://127.0.0.1:${l.port}`;
    const inventoryUrl = `http://127.0.0.1:${i.port}`;
    // The new service holds the same catalogue, in the same order, under its own ids.
    const direct = createClient(InventoryService, createGrpcTransport({ baseUrl: inventoryUrl }));
    await waitFor(
      () =>
        direct.listProducts({}).then(
          () => true,
          () => false,
        ),
      { what: "inventory SERVING" },
    );
    for (const p of SEED.products) {
      const { product } = await direct.createProduct(
        {
          sku: p.sku,
          name: p.name,
          price: { amountMinor: BigInt(p.price), currency: "EUR" },
          initialStock: BigInt(p.stock),
        },
        { headers: identity.headers("inventory", "operator", ["admin"]) },
      );
      newIds.set(p.sku, product?.id ?? "");
    }
    gateway = createGateway({
      config: loadConfig({
        PORT: "0",
        ADMIN_PORT: "0",
        LOG_LEVEL: "silent",
        DISCOVERY: "static",
        UPSTREAMS: `inventory=${inventoryUrl}`,
        JWKS_URL: "http://127.0.0.1:9/.well-known/jwks.json", // public methods only here
        IDENTITY_KEY: identity.keys.gateway?.privateKey,
        STRANGLER_LEGACY_URL: legacyUrl,
        STRANGLER_ROUTES: "GetProduct=100",
      }),
    });
    ({ url, adminUrl } = await gateway.start());
    // The two sides' catalogues differ by ids: a rule for that, on the list route.
    await set("ListProducts", { ignore: [...DEFAULT_IGNORE, "products.*.id"] });
  });

  afterAll(async () => {
    await gateway?.stop();
    await Promise.all([legacy?.stop(), inventory?.stop()]);
    await Promise.all([legacyDb?.drop(), inventoryDb?.drop(), deleteNamespaceStreams(namespace)]);
  });

  it("transcodes REST to the RPC from its google.api.http rule: path and query binding, body shape, status codes", async () => {
    const kettle = SEED.products[0];
    const id = newIds.get(kettle.sku)!;
    const fromNew = await get(`/api/products/${id}`);
    expect(fromNew.side).toBe("new");
    expect(fromNew.status).toBe(200);
    const fromLegacy = await get(`/api/products/${kettle.id}`, {}, legacyUrl);
    // The same shape, field for field: snake_case names, 64-bit integers as numbers, every field;
    // the new side adds the product's version (the caches' source version), which old clients ignore.
    expect(fromNew.body.version).toEqual(expect.any(Number));
    const { version: _version, ...newShape } = fromNew.body;
    expect(Object.keys(newShape).sort()).toEqual(Object.keys(fromLegacy.body).sort());
    expect({ ...newShape, id: "", create_time: "" }).toEqual({
      ...fromLegacy.body,
      id: "",
      create_time: "",
    });

    const bad = await get("/api/products/not-a-uuid");
    expect(bad).toMatchObject({ status: 400, body: { error: "invalid_argument" } });
    expect(bad.body.message).toMatch(/^id: /);
    expect((await get("/api/products/5d1c0a7e-0000-4000-8000-0000000000ff")).body).toMatchObject({
      error: "not_found",
    });
    expect((await get("/api/products/5d1c0a7e-0000-4000-8000-0000000000ff")).status).toBe(404);

    await set("ListProducts", { weight: 100 });
    const page = await get("/api/products?page_size=2");
    expect(page.side).toBe("new");
    expect(page.body.products.map((p: { sku: string }) => p.sku)).toEqual(
      SEED.products.slice(0, 2).map((p) => p.sku),
    );
    const next = await get(
      `/api/products?page_size=2&page_token=${encodeURIComponent(page.body.next_page_token)}`,
    );
    expect(next.body.products.map((p: { sku: string }) => p.sku)).toEqual(
      SEED.products.slice(2, 4).map((p) => p.sku),
    );
    const unknown = await get("/api/products?colour=red");
    expect(unknown).toMatchObject({ status: 400, body: { error: "invalid_argument" } });
    expect(unknown.body.message).toMatch(/colour/);
    expect((await get("/api/products?page_size=-1")).status).toBe(400);
    await set("ListProducts", { weight: 0 });
  });

  it("honours a route's weight within ±8 points over 400 users, and keeps each user on one side", async () => {
    await set("ListProducts", { weight: 30 });
    // In batches of 50: the edge allows 256 connections per client address.
    const sides: Answer[] = [];
    for (let b = 0; b < 8; b++) {
      sides.push(
        ...(await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            get("/api/products?page_size=1", { cookie: `mw_sticky=user-${b * 50 + i}` }),
          ),
        )),
      );
    }
    expect(
      sides
        .filter((a) => a.status !== 200)
        .map((a) => [a.side, a.status, a.text])
        .slice(0, 3),
    ).toEqual([]);
    const share = sides.filter((a) => a.side === "new").length / sides.length;
    expect(share).toBeGreaterThan(0.22);
    expect(share).toBeLessThan(0.38);

    // Sticky: each of 20 users sees one side over 10 requests; raising the weight moves users to
    // the new side only, never back.
    const before = new Map<number, string>();
    for (let u = 0; u < 20; u++) {
      const seen = new Set<string | null>();
      for (let k = 0; k < 10; k++)
        seen.add((await get("/api/products?page_size=1", { cookie: `mw_sticky=sticky-${u}` })).side);
      expect(seen.size).toBe(1);
      before.set(u, [...seen][0] ?? "");
    }
    await set("ListProducts", { weight: 70 });
    for (let u = 0; u < 20; u++) {
      const now = (await get("/api/products?page_size=1", { cookie: `mw_sticky=sticky-${u}` })).side;
      if (before.get(u) === "new") expect(now).toBe("new");
    }
    await set("ListProducts", { weight: 0 });
  });

  it("at 100% legacy sees none of the route's traffic; at 0% all of it goes back", async () => {
    const path = "/api/products?page_size=3";
    await set("ListProducts", { weight: 100 });
    const seenBefore = legacySaw(path);
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => get(path, { cookie: `mw_sticky=c-${i}` })),
    );
    expect(answers.every((a) => a.side === "new" && a.status === 200)).toBe(true);
    expect(legacySaw(path)).toBe(seenBefore);

    await set("ListProducts", { weight: 0 });
    const back = await Promise.all(
      Array.from({ length: 50 }, (_, i) => get(path, { cookie: `mw_sticky=c-${i}` })),
    );
    expect(back.every((a) => a.side === "legacy" && a.status === 200)).toBe(true);
    await waitFor(() => legacySaw(path) === seenBefore + 50, { what: "legacy logging the 50 requests" });
  });

  it("shadow never changes the answer, compares both field by field, and reports a planted difference with its field", async () => {
    await admin("DELETE", "/strangler/routes/ListProducts/diffs");
    await set("ListProducts", { weight: 0, shadow: true });
    const direct = await get("/api/products", {}, legacyUrl);
    const shadowed = await Promise.all(Array.from({ length: 30 }, () => get("/api/products")));
    for (const a of shadowed) {
      expect(a.side).toBe("legacy");
      expect(a.status).toBe(direct.status);
      expect(a.text).toBe(direct.text);
    }
    await waitFor(
      async () => (await admin("GET", "/strangler/routes/ListProducts/diffs")).body.compared >= 30,
      {
        what: "30 shadow comparisons",
      },
    );
    expect((await admin("GET", "/strangler/routes/ListProducts/diffs")).body).toMatchObject({
      compared: 30,
      differed: 0,
    });

    // A back-office script changes the mug's stock in the monolith's database: the sides now differ.
    const sql = postgres(legacyDb.url, { max: 1, onnotice: () => {} });
    try {
      await sql`UPDATE stock SET on_hand = 7 WHERE product_id = ${SEED.products[2].id}`;
    } finally {
      await sql.end();
    }
    const after = await get("/api/products");
    expect(after.side).toBe("legacy");
    expect(after.body.products[2].on_hand).toBe(7);
    const report = await waitFor(
      async () => {
        const d = (await admin("GET", "/strangler/routes/ListProducts/diffs")).body;
        return d.differed >= 1 ? d : undefined;
      },
      { what: "the planted difference reported" },
    );
    expect(report.fields).toMatchObject({ "products[2].on_hand": 1, "products[2].available": 1 });
    expect(report.samples.at(-1).diffs).toContainEqual({ path: "products[2].on_hand", legacy: 7, new: 120 });
    const status = (await admin("GET", "/strangler")).body;
    const row = status.routes.find((r: { name: string }) => r.name === "ListProducts");
    expect(row.shadow_stats.diff_rate).toBeCloseTo(1 / 31, 5);
    expect(row.latency_ms.legacy.p50).toBeGreaterThan(0);
    await set("ListProducts", { shadow: false });
  });

  it("replays an old client's recorded session identically against both sides", async () => {
    // The session, recorded against the monolith (the client follows the page tokens it gets).
    const session = async () => {
      const out: Array<{ status: number; body: unknown }> = [];
      const first = await get("/api/products?page_size=4", { cookie: "mw_sticky=replay" });
      out.push(first);
      out.push(
        await get(`/api/products?page_token=${encodeURIComponent(first.body.next_page_token)}`, {
          cookie: "mw_sticky=replay",
        }),
      );
      out.push(await get("/api/products/nope", { cookie: "mw_sticky=replay" }));
      out.push(
        await get("/api/products/5d1c0a7e-0000-4000-8000-0000000000ff", { cookie: "mw_sticky=replay" }),
      );
      out.push(await get("/api/products?page_size=x", { cookie: "mw_sticky=replay" }));
      return out.map((a) => ({ status: a.status, body: a.body, side: (a as Answer).side }));
    };
    // Same data on both sides first (the stock planted above, put back).
    const sql = postgres(legacyDb.url, { max: 1, onnotice: () => {} });
    try {
      await sql`UPDATE stock SET on_hand = ${SEED.products[2].stock} WHERE product_id = ${SEED.products[2].id}`;
    } finally {
      await sql.end();
    }
    await set("ListProducts", { weight: 0 });
    await set("GetProduct", { weight: 0 });
    const recorded = await session();
    expect(recorded.every((a) => a.side === "legacy")).toBe(true);
    await set("ListProducts", { weight: 100 });
    await set("GetProduct", { weight: 100 });
    const replayed = await session();
    expect(replayed.every((a) => a.side === "new")).toBe(true);
    // A product's `version` is a field the new side adds (the README's mapping): dropped here.
    const strip = (v: unknown): unknown =>
      JSON.parse(JSON.stringify(v), (k, x) =>
        k === "version"
          ? undefined
          : ["id", "create_time", "next_page_token", "message"].includes(k)
            ? "(differs by nature)"
            : x,
      );
    expect(replayed.map((a) => ({ status: a.status, body: strip(a.body) }))).toEqual(
      recorded.map((a) => ({ status: a.status, body: strip(a.body) })),
    );
  });

  it("forwards routes no method declares to legacy, and refuses bad cutover changes with a precise answer", async () => {
    const elsewhere = await get("/api/stores/1");
    expect(elsewhere).toMatchObject({ status: 404, side: "legacy" });
    expect(gateway.strangler.stats.get("legacy-only")?.requests.legacy).toBeGreaterThan(0);
    // The user's orders list is ListOrders now (a declared route), at 0%: legacy answers it.
    const ada = SEED.users[0];
    const unauth = await get(`/api/users/${ada.id}/orders`);
    expect(unauth).toMatchObject({ status: 401, side: "legacy", body: { error: "unauthenticated" } });
    expect(gateway.strangler.stats.get("ListOrders")?.requests.legacy).toBe(1);

    expect(await admin("POST", "/strangler/routes/ListProducts", { weight: 150 })).toMatchObject({
      status: 400,
      body: { message: expect.stringMatching(/^weight: /) },
    });
    expect(await admin("POST", "/strangler/routes/ListProducts", { shadow: "maybe" })).toMatchObject({
      status: 400,
    });
    const write = await admin("POST", "/strangler/routes/PlaceOrder", { shadow: true });
    expect(write.status).toBe(409);
    expect(write.body.message).toMatch(/side effects/);
    expect((await admin("POST", "/strangler/routes/Nope", { weight: 1 })).status).toBe(404);
    const notJson = await fetch(`${adminUrl}/strangler/routes/ListProducts`, { method: "POST", body: "{" });
    expect(notJson.status).toBe(400);
    expect(gateway.strangler.states.get("ListProducts")?.weight).toBe(100);
  });
});
