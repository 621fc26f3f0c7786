import http2 from "node:http2";
import type { AddressInfo } from "node:net";
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

const legacyMain = fileURLToPath(new URL("../../../legacy/dist/main.js", import.meta.url));

describe("shadow never makes the client wait for the new side", () => {
  let db: TestDatabase;
  let legacy: ManagedProcess;
  let hanging: http2.Http2Server;
  const held: http2.ServerHttp2Stream[] = [];
  let gateway: Gateway;
  let url: string;
  let adminUrl: string;

  beforeAll(async () => {
    db = await createTestDatabase("mw_strsh");
    legacy = startProcess(process.execPath, [legacyMain], { env: { DATABASE_URL: db.url, PORT: "0" } });
    const l = await legacy.waitForLog((x) => x.msg === "listening");
    // The "new service": takes every call and never answers it.
    hanging = http2.createServer();
    hanging.on("stream", (stream) => held.push(stream));
    hanging.on("session", (session) => session.on("error", () => {}));
    await new Promise<void>((r) => hanging.listen(0, "127.0.0.1", r));
    // Static upstreams without health checks (no discovery): the calls reach the hanging server.
    gateway = createGateway({
      config: {
        ...loadConfig({
          PORT: "0",
          ADMIN_PORT: "0",
          LOG_LEVEL: "silent",
          DISCOVERY: "static",
          UPSTREAMS: `inventory=http://127.0.0.1:${(hanging.address() as AddressInfo).port}`,
          JWKS_URL: "http://127.0.0.1:9/.well-known/jwks.json",
          DEFAULT_TIMEOUT_MS: "20000",
          STRANGLER_LEGACY_URL: `http://127.0.0.1:${l.port}`,
          STRANGLER_ROUTES: "ListProducts=0,shadow",
        }),
        discovery: undefined,
      },
    });
    ({ url, adminUrl } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    for (const s of held) s.on("error", () => {}).close(http2.constants.NGHTTP2_CANCEL);
    await new Promise<void>((r) => hanging?.close(() => r()));
    await legacy?.stop();
    await db?.drop();
  });

  it("answers from legacy while the shadow call is still pending (bound: 5 s against a 20 s shadow deadline)", async () => {
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      const res = await fetch(`${url}/api/products`);
      const elapsed = performance.now() - t0;
      expect(res.status).toBe(200);
      expect(res.headers.get("x-meshwork-side")).toBe("legacy");
      expect(((await res.json()) as { products: unknown[] }).products).toHaveLength(SEED.products.length);
      expect(elapsed).toBeLessThan(5_000);
    }
    // Every shadow call reached the new side and none has been compared: they are still waiting.
    await waitFor(() => held.length >= 5, { what: "the 5 shadow calls at the new side" });
    const status = (await (await fetch(`${adminUrl}/strangler`)).json()) as {
      routes: Array<{ name: string; requests: { legacy: number }; shadow_stats: { compared: number } }>;
    };
    const row = status.routes.find((r) => r.name === "ListProducts");
    expect(row?.requests.legacy).toBe(5);
    expect(row?.shadow_stats.compared).toBe(0);
  });
});
