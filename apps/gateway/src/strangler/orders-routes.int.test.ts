import { fileURLToPath } from "node:url";
import { SEED } from "@meshwork/legacy";
import {
  createTestDatabase,
  type ManagedProcess,
  startProcess,
  type TestDatabase,
  waitFor,
} from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../config.js";
import { createGateway, type Gateway } from "../gateway.js";

// The orders routes' cutover at a real gateway in front of a real monolith. No orders service
// runs here: these tests are about where each request goes (the `x-meshwork-side` header and
// legacy's own request log), not what the new side answers (it answers 401 or 503 here).
const legacyMain = fileURLToPath(new URL("../../../legacy/dist/main.js", import.meta.url));

describe("the orders routes at the strangler (real legacy and gateway processes)", () => {
  let db: TestDatabase;
  let legacy: ManagedProcess;
  let gateway: Gateway;
  let url: string;
  let adminUrl: string;
  const order = SEED.orders[0]!.id;

  const set = async (route: string, patch: Record<string, unknown>) => {
    const res = await fetch(`${adminUrl}/strangler/routes/${route}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(patch),
    });
    expect(res.status).toBe(200);
  };
  const sideOf = async (method: string, path: string, user: string) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { cookie: `mw_sticky=${user}`, "content-type": "application/json" },
      body: method === "POST" ? JSON.stringify({ idempotency_key: `k-${user}-xxxx`, items: [] }) : undefined,
    });
    await res.arrayBuffer();
    return res.headers.get("x-meshwork-side");
  };
  const legacySaw = (method: string, path: string) =>
    legacy
      .logs()
      .filter(
        (l) =>
          l.msg === "incoming request" &&
          (l.req as { url?: string; method?: string })?.url === path &&
          (l.req as { method?: string })?.method === method,
      ).length;

  beforeAll(async () => {
    db = await createTestDatabase("mw_strord");
    legacy = startProcess(process.execPath, [legacyMain], {
      env: { DATABASE_URL: db.url, PORT: "0", LEGACY_TOKEN_SECRET: "s".repeat(40) },
    });
    const l = await legacy.waitForLog((x) => x.msg === "listening", 120_000);
    gateway = createGateway({
      config: loadConfig({
        PORT: "0",
        ADMIN_PORT: "0",
        LOG_LEVEL: "silent",
        DISCOVERY: "static",
        UPSTREAMS: "orders=http://127.0.0.1:9",
        JWKS_URL: "http://127.0.0.1:9/.well-known/jwks.json",
        STRANGLER_LEGACY_URL: `http://127.0.0.1:${l.port}`,
      }),
    });
    ({ url, adminUrl } = await gateway.start());
  }, 180_000);

  afterAll(async () => {
    await gateway?.stop();
    await legacy?.stop();
    await db?.drop();
  });

  it("honours GetOrder's and ListOrders' weights within ±8 points over 400 users, each user on one side", async () => {
    for (const [route, path] of [
      ["GetOrder", `/api/orders/${order}`],
      ["ListOrders", `/api/users/${SEED.users[0]!.id}/orders`],
    ] as const) {
      await set(route, { weight: 30 });
      const sides: Array<string | null> = [];
      for (let b = 0; b < 8; b++)
        sides.push(
          ...(await Promise.all(
            Array.from({ length: 50 }, (_, i) => sideOf("GET", path, `u-${b * 50 + i}`)),
          )),
        );
      const share = sides.filter((s) => s === "new").length / sides.length;
      expect(share, route).toBeGreaterThan(0.22);
      expect(share, route).toBeLessThan(0.38);
      for (let u = 0; u < 10; u++) {
        const seen = new Set(
          await Promise.all(Array.from({ length: 5 }, () => sideOf("GET", path, `s-${u}`))),
        );
        expect(seen.size).toBe(1);
      }
      await set(route, { weight: 0 });
    }
  });

  it("POST /api/orders at 100% reaches no legacy handler; at 0% every one goes back", async () => {
    const before = legacySaw("POST", "/api/orders");
    await set("PlaceOrder", { weight: 100 });
    const sides = await Promise.all(
      Array.from({ length: 40 }, (_, i) => sideOf("POST", "/api/orders", `p-${i}`)),
    );
    expect(sides.every((s) => s === "new")).toBe(true);
    expect(legacySaw("POST", "/api/orders")).toBe(before);
    await set("PlaceOrder", { weight: 0 });
    const back = await Promise.all(
      Array.from({ length: 40 }, (_, i) => sideOf("POST", "/api/orders", `p-${i}`)),
    );
    expect(back.every((s) => s === "legacy")).toBe(true);
    await waitFor(() => legacySaw("POST", "/api/orders") === before + 40, {
      what: "legacy logging the 40 posts",
    });
  });

  it("refuses to shadow the write, and shadows the two reads", async () => {
    const write = await fetch(`${adminUrl}/strangler/routes/PlaceOrder`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ shadow: true }),
    });
    expect(write.status).toBe(409);
    await set("GetOrder", { shadow: true });
    await set("ListOrders", { shadow: true });
    expect(gateway.strangler.states.get("ListOrders")).toMatchObject({ shadow: true, weight: 0 });
  });
});
