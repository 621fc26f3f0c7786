import { randomUUID } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { connectNats, streamName } from "@meshwork/events";
import { type ManagedProcess, startProcess, uniqueName, waitFor } from "@meshwork/testing";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeMeshStreams } from "../test/mesh-cleanup.js";
import { demoAdmin } from "./admin.js";

/**
 * The console in a real browser (Debian's Chromium driven by playwright-core) against a whole
 * mesh started by `meshctl up`: log in, place an order from the explorer and open its trace,
 * refuse a bad request with the field named, open the order's saga and its steps, see the breaker
 * to payments open, replay a dead letter, stop and restart a service. Any console error in the page fails the test; screenshots
 * are kept in tools/meshctl/test-results/console/.
 */
const root = fileURLToPath(new URL("../../../", import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const artefacts = join(root, "tools/meshctl/test-results/console");
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

describe.skipIf(!existsSync(CHROMIUM))("the mesh console in a browser", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-console-"));
  chmodSync(home, 0o755); // the embedded Postgres runs as the OS user postgres when root
  const namespace = `${uniqueName("t")}.`;
  let mesh: ManagedProcess;
  let browser: Browser;
  let page: Page;
  let consoleUrl: string;
  let gateway: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    mkdirSync(artefacts, { recursive: true });
    mesh = startProcess(
      process.execPath,
      [join(root, "tools/meshctl/dist/main.js"), "up", "--ports", "auto"],
      {
        cwd: root,
        detached: true,
        env: { MESHWORK_HOME: home, DATABASE_URL: "", EVENTS_NAMESPACE: namespace, NATS_URL: natsUrl },
      },
    );
    // Generous: on a loaded two-core machine the whole mesh takes minutes to come up.
    const line = await mesh.waitForLine((l) => l.startsWith("meshctl | console: http://"), 420_000);
    consoleUrl = line.slice("meshctl | console: ".length).trim();
    const gatewayRow = await mesh.waitForLine((l) => /^gateway\s+127\.0\.0\.1:\d+\s+LIVE/.test(l));
    gateway = `http://${gatewayRow.split(/\s+/)[1]}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on("console", (m) => {
      if (m.type() === "error") pageErrors.push(m.text());
    });
    page.on("pageerror", (e) => pageErrors.push(e.message));
  }, 480_000);

  afterAll(async () => {
    await browser?.close();
    // Ctrl-C to the mesh's process group; SIGKILL to the group if it has not stopped in a minute.
    const stopped = mesh?.stop("SIGINT");
    const late = setTimeout(() => {
      if (mesh?.child.pid) process.kill(-mesh.child.pid, "SIGKILL");
    }, 60_000);
    await stopped;
    clearTimeout(late);
    await removeMeshStreams(namespace, { natsUrl });
    rmSync(home, { recursive: true, force: true });
  }, 180_000);

  /** Waits until the element's text is (`toBe`), contains (`toContain`) or matches (`toMatch`) `want`. */
  const until = (
    selector: string,
    kind: "toBe" | "toContain" | "toMatch",
    want: string | RegExp,
    timeoutMs = 30_000,
  ) =>
    waitFor(
      async () => {
        const text =
          (await page
            .locator(selector)
            .first()
            .textContent({ timeout: 1_000 })
            .catch(() => null)) ?? "";
        if (kind === "toBe") return text === want;
        if (kind === "toContain") return text.includes(want as string);
        return (want as RegExp).test(text);
      },
      { timeoutMs, what: `${selector} ${kind} ${String(want)}` },
    ).catch(async (err: Error) => {
      // What the page showed instead (a failure on a loaded CI machine cannot be re-run to look).
      const seen = await page
        .locator("main")
        .first()
        .textContent({ timeout: 1_000 })
        .catch(() => null);
      throw new Error(`${err.message}; the page showed:\n${(seen ?? "(no text)").slice(0, 2_000)}`);
    });

  /**
   * Opens a method in the explorer and waits until its own panel shows: the click re-renders
   * later, and a panel still showing the previous method (same access badge) took the next fill
   * (CI: WatchOrder's request typed into PlaceOrder's editor, then replaced by the template).
   */
  const pick = async (method: string) => {
    await page.click(`[data-testid="method-${method}"]`);
    await until('[data-testid="method"] h3', "toBe", `/${method}`);
  };

  const shot = (name: string) => page.screenshot({ path: join(artefacts, `${name}.png`), fullPage: true });

  it("logs in, places an order from the explorer, opens its trace, and names a bad field", async () => {
    // The shop's admin and a product, made the way an operator would (the bootstrap secret).
    const admin = await demoAdmin(gateway, home);
    if (!admin) throw new Error("no bootstrap secret in the mesh's home");
    const edge = createGrpcTransport({ baseUrl: gateway });
    const { accessToken } = await createClient(UserService, edge).login(admin);
    const product = (
      await createClient(InventoryService, edge).createProduct(
        {
          sku: `MUG-${randomUUID().slice(0, 6)}`,
          name: "Mug",
          price: { amountMinor: 1200n, currency: "EUR" },
          initialStock: 100n,
        },
        { headers: { authorization: `Bearer ${accessToken}` } },
      )
    ).product;
    expect(product?.id).toBeTruthy();

    // Services: every process of the mesh, SERVING.
    await page.goto(consoleUrl);
    for (const name of ["gateway", "users", "inventory", "payments", "orders", "notifications"]) {
      await page
        .locator(`[data-testid="instance-${name}"][data-health="SERVING"]`)
        .first()
        .waitFor({ timeout: 60_000 });
    }
    await shot("1-services");

    // Register and log in from the page.
    await page.fill('input[name="email"]', `shopper-${randomUUID().slice(0, 8)}@example.com`);
    await page.fill('input[name="password"]', "a shopper's password");
    await page.click('[data-testid="register"]');
    await page.locator('[data-testid="session"]').waitFor();

    // The explorer: PlaceOrder from reflection, with its policy, and a call through the gateway.
    await page.click('[data-testid="nav-explorer"]');
    await pick("meshwork.orders.v1.OrderService/PlaceOrder");
    await until('[data-testid="access"]', "toContain", "authenticated");
    await until('[data-testid="idempotency"]', "toContain", "IDEMPOTENT");
    // The contract's comments, which reflection does not carry, come from the console's build.
    await until('[data-testid="method-comment"]', "toContain", "PlaceOrder creates an order in PENDING");
    await until('[data-testid="field-comment"]', "toContain", "Chosen by the client");
    const template = JSON.parse(await page.locator('[data-testid="editor"]').inputValue()) as Record<
      string,
      unknown
    >;
    expect(Object.keys(template)).toEqual(["idempotencyKey", "items"]);
    await page.fill(
      '[data-testid="editor"]',
      JSON.stringify({
        idempotencyKey: randomUUID(),
        items: [{ productId: product?.id, quantity: 2, unitPrice: { amountMinor: 1200, currency: "EUR" } }],
      }),
    );
    await page.click('[data-testid="send"]');
    await until('[data-testid="result-code"]', "toBe", "OK", 30_000);
    const response = JSON.parse((await page.locator('[data-testid="response"]').textContent()) ?? "{}");
    expect(response.order.id).toMatch(/^[0-9a-f-]{36}$/);
    await until('[data-testid="result"]', "toContain", "grpc-status");
    await expect(page.locator('[data-testid="open-saga"]').getAttribute("href")).resolves.toBe(
      `#/sagas/${response.order.id}`,
    );
    await shot("2-explorer-place-order");

    // WatchOrder streams the order's statuses into the page until it is confirmed.
    await pick("meshwork.orders.v1.OrderService/WatchOrder");
    await until('[data-testid="access"]', "toContain", "authenticated");
    const watch = JSON.stringify({ id: response.order.id });
    await page.fill('[data-testid="editor"]', watch);
    expect(await page.locator('[data-testid="editor"]').inputValue()).toBe(watch);
    await page.click('[data-testid="send"]');
    await until('[data-testid="stream"]', "toContain", "ORDER_STATUS_CONFIRMED", 60_000);
    await until('[data-testid="result-code"]', "toBe", "OK", 60_000);
    await shot("2b-watch-order");
    await pick("meshwork.orders.v1.OrderService/PlaceOrder");
    await waitFor(
      async () => (await page.locator('[data-testid="editor"]').inputValue()).includes("idempotencyKey"),
      {
        what: "PlaceOrder's template in the editor",
      },
    );
    await page.fill(
      '[data-testid="editor"]',
      JSON.stringify({
        idempotencyKey: randomUUID(),
        items: [{ productId: product?.id, quantity: 1, unitPrice: { amountMinor: 1200, currency: "EUR" } }],
      }),
    );
    await page.click('[data-testid="send"]');
    await until('[data-testid="result-code"]', "toBe", "OK", 30_000);

    // Its trace: spans of four services (the gateway, orders, inventory, payments) in one waterfall.
    await page.click('[data-testid="open-trace"]');
    for (const service of ["gateway", "orders", "inventory", "payments"]) {
      await page
        .locator(`[data-testid="span"][data-service="${service}"]`)
        .first()
        .waitFor({ timeout: 60_000 });
    }
    await page.locator('[data-testid="span"]').first().click();
    await until('[data-testid="span-detail"]', "toContain", "rpc.");
    await shot("3-trace");
    // The trace links to the saga its request started (its steps' spans name it).
    await page.locator('[data-testid="trace-saga"]').waitFor({ timeout: 30_000 });
    // The flow map drawn from what was observed: the gateway calls orders, orders calls payments.
    await page.click('[data-testid="nav-flow"]');
    for (const [from, to] of [
      ["service:gateway", "service:orders"],
      ["service:orders", "service:inventory"],
      ["service:orders", "service:payments"],
    ]) {
      await page
        .locator(`[data-testid="flow-edge"][data-from="${from}"][data-to="${to}"]`)
        .waitFor({ timeout: 30_000 });
    }
    await shot("3b-flow-map");

    // Bad input: the field is named, the page stays.
    await page.click('[data-testid="nav-explorer"]');
    await pick("meshwork.orders.v1.OrderService/PlaceOrder");
    await page.locator('[data-testid="editor"]').waitFor();
    const bad = '{"idempotencyKey": "abcdefgh-1", "items": [{"quantity": "two"}]}';
    await page.fill('[data-testid="editor"]', bad);
    expect(await page.locator('[data-testid="editor"]').inputValue()).toBe(bad);
    await page.click('[data-testid="send"]');
    await until('[data-testid="result-code"]', "toBe", "INVALID_ARGUMENT");
    await until('[data-testid="result-field"]', "toContain", "items[0].quantity");
    // A request the schema accepts but the service's rules refuse: the service's answer, field named.
    await page.fill('[data-testid="editor"]', '{"idempotencyKey": "abcdefgh-2", "items": []}');
    await page.click('[data-testid="send"]');
    await until('[data-testid="result-field"]', "toContain", "items", 15_000);
    await until('[data-testid="result-code"]', "toBe", "INVALID_ARGUMENT");
    await shot("4-invalid-argument");
    expect(pageErrors).toEqual([]);

    // Payments hard down: orders' breaker to payments opens, and the page shows it.
    const payments = createClient(PaymentService, edge);
    await payments.setFaults(
      { faults: { hardDown: true } },
      { headers: { authorization: `Bearer ${accessToken}` } },
    );
    await page.click('[data-testid="nav-resilience"]');
    await page
      .locator('[data-testid="breaker-orders-payments"][data-state="closed"]')
      .waitFor({ timeout: 30_000 });
    await page.click('[data-testid="nav-explorer"]');
    await pick("meshwork.orders.v1.OrderService/PlaceOrder");
    for (let i = 0; i < 3; i++) {
      await page.fill(
        '[data-testid="editor"]',
        JSON.stringify({
          idempotencyKey: randomUUID(),
          items: [{ productId: product?.id, quantity: 1, unitPrice: { amountMinor: 1200, currency: "EUR" } }],
        }),
      );
      await page.click('[data-testid="send"]');
      // Accepted (the saga then meets payments down in the background), or refused: either way an answer.
      await until('[data-testid="result-code"]', "toMatch", /^[A-Z_]+$/, 30_000);
    }
    await page.click('[data-testid="nav-resilience"]');
    await page
      .locator('[data-testid="breaker-orders-payments"][data-state="open"]')
      .waitFor({ timeout: 90_000 });
    await shot("5-breaker-open");
    await payments.setFaults(
      { faults: { hardDown: false } },
      { headers: { authorization: `Bearer ${accessToken}` } },
    );

    // Sagas are an operator's view: the shopper is told so; the admin logs in from the page and
    // opens the first order's saga from the list: three steps done, each with its history.
    await page.click('[data-testid="nav-sagas"]');
    await until('[data-testid="sagas-login"]', "toContain", "admin role");
    await page.click('[data-testid="session"] button');
    await page.fill('input[name="email"]', admin.email);
    await page.fill('input[name="password"]', admin.password);
    await page.click('[data-testid="login"]');
    await page.locator('[data-testid="session"]').waitFor();
    const row = page.locator(`[data-testid="saga-row"][data-id="${response.order.id}"]`);
    await row.waitFor({ timeout: 30_000 });
    await expect(row.textContent()).resolves.toContain("completed");
    await row.locator("a").first().click();
    await until('[data-testid="saga-state"]', "toBe", "COMPLETED");
    for (const step of ["reserve", "authorize", "capture"]) {
      await page.locator(`[data-testid="saga-step"][data-step="${step}"][data-status="DONE"]`).waitFor();
    }
    await expect(
      page
        .locator('[data-testid="saga-step"][data-step="capture"] [data-testid="saga-event"]')
        .first()
        .textContent(),
    ).resolves.toContain("done (attempt");
    await shot("5b-saga");
    await page.click('[data-testid="saga-trace"]');
    await page.locator('[data-testid="span"][data-service="orders"]').first().waitFor({ timeout: 30_000 });
    expect(pageErrors).toEqual([]);
  }, 300_000);

  it("replays a dead letter from the page", async () => {
    // A poison event: notifications gives up on it and dead-letters it.
    const nc = await connectNats(natsUrl, "console-test");
    try {
      const h = headers();
      h.set("ce-specversion", "1.0");
      h.set("ce-id", "poison-console");
      h.set("ce-type", "meshwork.users.v1.UserRegistered");
      h.set("ce-source", "/console-test");
      h.set("ce-time", new Date().toISOString());
      await jetstream(nc).publish(
        `${namespace}meshwork.users.v1.UserRegistered`,
        new Uint8Array([0xff, 0xff]),
        {
          headers: h,
          msgID: "poison-console",
        },
      );
      const jsm = await jetstreamManager(nc);
      const dlq = streamName(namespace, "DLQ_NOTIFICATIONS");
      await waitFor(async () => (await jsm.streams.info(dlq)).state.messages === 1, {
        what: "the dead letter",
        timeoutMs: 60_000,
      });
      const before = (await jsm.streams.info(dlq)).state.first_seq;

      await page.click('[data-testid="nav-resilience"]');
      const row = page.locator('[data-testid="dead-letter"]', { hasText: "poison" }).first();
      await row.waitFor({ timeout: 30_000 });
      await expect(row.textContent()).resolves.toContain("meshwork.users.v1.UserRegistered");
      await shot("6-dead-letter");
      await row.locator('[data-testid="replay"]').click();
      await until('[data-testid="replay-note"]', "toContain", `replayed ${dlq}#${before}`, 15_000);
      // Published again on its subject (and, still poison, dead-lettered again under a new sequence).
      await waitFor(
        async () => {
          const info = (await jsm.streams.info(dlq)).state;
          return info.first_seq > before && info.messages === 1;
        },
        { what: "the replayed letter to come back under a new sequence", timeoutMs: 60_000 },
      );
    } finally {
      await nc.close();
    }
    expect(pageErrors).toEqual([]);
  }, 180_000);

  it("keeps working while a service is down, says which, and restarts it", async () => {
    await page.click('[data-testid="nav-services"]');
    await page.click('[data-testid="stop-payments"]');
    await page
      .locator('[data-testid="instance-payments"][data-health="DOWN"]')
      .first()
      .waitFor({ timeout: 60_000 });
    await until('[data-testid="problems"]', "toMatch", /payments at \S+ is down/, 30_000);
    // Every other service still shown as serving, and the other pages still answer.
    await page.locator('[data-testid="instance-orders"][data-health="SERVING"]').first().waitFor();
    await shot("7-payments-down");
    await page.click('[data-testid="nav-traces"]');
    await page.locator('[data-testid="traces"] tbody tr').first().waitFor({ timeout: 30_000 });
    await page.click('[data-testid="nav-services"]');
    await page.click('[data-testid="restart-payments"]');
    await page
      .locator('[data-testid="instance-payments"][data-health="SERVING"]')
      .first()
      .waitFor({ timeout: 90_000 });
    expect(pageErrors).toEqual([]);
  }, 240_000);
});
