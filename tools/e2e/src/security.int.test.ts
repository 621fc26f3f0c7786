import { randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { createLogger } from "@meshwork/telemetry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Mesh, startMesh } from "./mesh.js";

type Account = Awaited<ReturnType<Mesh["login"]>>;

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: unknown) => Code[ConnectError.from(e).code],
  );

const PASSWORD = "a long password"; // mesh.login's
const MISSING = "00000000-0000-7000-8000-000000000000";

/**
 * Issue 25 (4, 5, 7) on the whole mesh, every service a real process, through the gateway: the
 * README's "Who may call what" table row by row with two users and an admin, the limits on
 * authentication, and no secret in any process's log after a bad-input suite.
 */
describe("security through the gateway", () => {
  let mesh: Mesh;
  let admin: Account;
  let alice: Account;
  let bob: Account;
  let gatewayLog = "";
  const secrets: string[] = [];

  beforeAll(async () => {
    const destination = new Writable({
      write(chunk, _enc, cb) {
        gatewayLog += String(chunk);
        cb();
      },
    });
    mesh = await startMesh(
      { users: { USERS_AUTH_MAX_FAILURES: "3", USERS_AUTH_FAILURE_WINDOW_S: "60", LOG_LEVEL: "debug" } },
      {
        common: { LOG_LEVEL: "debug" },
        gateway: { AUTH_RATE_LIMITS: "meshwork.users.v1.UserService/Login=25/1m:25" },
        gatewayLogger: createLogger({ service: "gateway", level: "debug", destination }),
      },
    );
    admin = await mesh.admin();
    alice = await mesh.login("alice@example.com");
    bob = await mesh.login("bob@example.com");
    await mesh.routable("orders");
    secrets.push(PASSWORD, mesh.bootstrapSecret);
    for (const a of [admin, alice, bob]) secrets.push(a.auth.headers.authorization.slice("Bearer ".length));
  });
  afterAll(async () => {
    await mesh?.stop();
  });

  it("answers every row of the access table: own data, another user's, an admin's view", async () => {
    const { users, notifications, orders, inventory } = mesh.clients;
    // users.GetUser: self or admin; another user's profile PERMISSION_DENIED, existing or not.
    expect((await users.getUser({ id: alice.id }, alice.auth)).user?.email).toBe("alice@example.com");
    expect(await codeOf(users.getUser({ id: bob.id }, alice.auth))).toBe("PermissionDenied");
    expect(await codeOf(users.getUser({ id: MISSING }, alice.auth))).toBe("PermissionDenied");
    expect((await users.getUser({ id: bob.id }, admin.auth)).user?.email).toBe("bob@example.com");
    expect(await codeOf(users.getUser({ id: alice.id }))).toBe("Unauthenticated");
    // users.ListUsers: admins only.
    expect(await codeOf(users.listUsers({}, alice.auth))).toBe("PermissionDenied");
    expect((await users.listUsers({ pageSize: 100 }, admin.auth)).users.length).toBeGreaterThanOrEqual(3);
    // users.RotateSigningKey: admins only (the admin's rotation is covered by meshctl's keys test).
    expect(await codeOf(users.rotateSigningKey({}, alice.auth))).toBe("PermissionDenied");
    expect(await codeOf(users.rotateSigningKey({}))).toBe("Unauthenticated");
    // users.CreateFirstAdmin: public, and once (the mesh's admin used it).
    expect(
      await codeOf(
        users.createFirstAdmin({
          bootstrapSecret: mesh.bootstrapSecret,
          email: "late@example.com",
          password: "a second admin?",
          displayName: "L",
        }),
      ),
    ).toBe("FailedPrecondition");

    // inventory: the catalogue is public; products are created by admins.
    const { product } = await inventory.createProduct(
      {
        sku: `SEC-${randomUUID().slice(0, 8)}`,
        name: "Key",
        price: { amountMinor: 500n, currency: "EUR" },
        initialStock: 5n,
      },
      admin.auth,
    );
    const productId = product?.id ?? "";
    expect((await inventory.getProduct({ id: productId })).product?.name).toBe("Key");
    expect((await inventory.listProducts({})).products.length).toBeGreaterThan(0);

    // orders: each user's own; another user's order is NOT_FOUND (ownership is known after the lookup).
    const { order } = await orders.placeOrder(
      { idempotencyKey: randomUUID(), items: [{ productId, quantity: 1n }] },
      alice.auth,
    );
    const orderId = order?.id ?? "";
    expect((await orders.getOrder({ id: orderId }, alice.auth)).order?.userId).toBe(alice.id);
    expect(await codeOf(orders.getOrder({ id: orderId }, bob.auth))).toBe("NotFound");
    expect(await codeOf(orders.cancelOrder({ id: orderId }, bob.auth))).toBe("NotFound");
    expect(
      await codeOf(
        (async () => {
          for await (const _ of orders.watchOrder({ id: orderId }, bob.auth)) break;
        })(),
      ),
    ).toBe("NotFound");
    expect((await orders.listOrders({}, bob.auth)).orders.map((o) => o.id)).not.toContain(orderId);
    expect((await orders.listOrders({}, alice.auth)).orders.map((o) => o.id)).toContain(orderId);
    expect(await codeOf(orders.listOrders({ allUsers: true }, bob.auth))).toBe("PermissionDenied");
    expect(
      (await orders.listOrders({ allUsers: true, pageSize: 100 }, admin.auth)).orders.map((o) => o.id),
    ).toContain(orderId);

    // notifications.ListNotifications: self or admin.
    await expect(notifications.listNotifications({ userId: alice.id }, alice.auth)).resolves.toBeDefined();
    expect(await codeOf(notifications.listNotifications({ userId: bob.id }, alice.auth))).toBe(
      "PermissionDenied",
    );
    expect(await codeOf(notifications.listNotifications({ userId: MISSING }, alice.auth))).toBe(
      "PermissionDenied",
    );
    await expect(notifications.listNotifications({ userId: bob.id }, admin.auth)).resolves.toBeDefined();

    // Methods for the admin or the "service" role (payments, stock, audits): a customer is refused
    // at the edge, whatever the request; an admin reaches the admin ones.
    const refusedForCustomers: Array<[DescService, string[]]> = [
      [
        InventoryService,
        [
          "CreateProduct",
          "AdjustStock",
          "ReserveStock",
          "ReleaseReservation",
          "GetReservation",
          "AuditStock",
          "CommitReservation",
        ],
      ],
      [
        PaymentService,
        [
          "AuthorizePayment",
          "CapturePayment",
          "VoidPayment",
          "RefundPayment",
          "GetPayment",
          "SetFaults",
          "GetFaults",
          "GetProviderLedger",
        ],
      ],
    ];
    for (const [service, names] of refusedForCustomers) {
      for (const name of names) {
        const method = service.methods.find((m) => m.name === name);
        expect(method, name).toBeDefined();
        const call = (
          mesh.clients as unknown as Record<
            string,
            Record<string, (r: object, o: object) => Promise<unknown>>
          >
        )[service === InventoryService ? "inventory" : "payments"]?.[method?.localName ?? ""];
        expect(
          await codeOf(call?.({}, alice.auth) ?? Promise.reject(new Error(name))),
          `${name} as a customer`,
        ).toBe("PermissionDenied");
      }
    }
    expect((await mesh.clients.payments.getFaults({}, admin.auth)).faults).toBeDefined();
    expect(await codeOf(mesh.clients.inventory.auditStock({}, admin.auth))).toBe("ok");
  });

  it("runs a bad-input suite, and no process logs a password, hash, token or the bootstrap secret", async () => {
    const { users, orders } = mesh.clients;
    const bad = "hunter2-but-longer-and-secret";
    secrets.push(bad);
    // Invalid arguments, a duplicate registration, wrong passwords, forged and garbage tokens.
    expect(await codeOf(users.registerUser({ email: "not an email", password: bad, displayName: "X" }))).toBe(
      "InvalidArgument",
    );
    expect(
      await codeOf(users.registerUser({ email: "alice@example.com", password: bad, displayName: "A" })),
    ).toBe("AlreadyExists");
    expect(await codeOf(users.login({ email: "carol@example.com", password: bad }))).toBe("Unauthenticated");
    // A failed insert: Postgres refuses a NUL in text, after the password was hashed. Whatever the
    // answer (INTERNAL today, INVALID_ARGUMENT once NUL bytes are refused up front), the statement's
    // parameters (the argon2 hash among them) must not be logged.
    const nul = await codeOf(
      users.registerUser({ email: "nul@example.com", password: bad, displayName: "a\u0000b" }),
    );
    expect(["Internal", "InvalidArgument"]).toContain(nul);
    const forged = `${alice.auth.headers.authorization.slice(0, -6)}AAAAAA`;
    const garbage = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.";
    secrets.push(forged.slice("Bearer ".length));
    for (const authorization of [forged, garbage, "Bearer not-a-jwt"]) {
      expect(await codeOf(users.getUser({ id: alice.id }, { headers: { authorization } }))).toBe(
        "Unauthenticated",
      );
    }
    expect(await codeOf(orders.placeOrder({ idempotencyKey: "short", items: [] }, alice.auth))).toBe(
      "InvalidArgument",
    );
    // A failed insert: a product id that does not exist, and a bad page token.
    expect(
      await codeOf(
        orders.placeOrder(
          { idempotencyKey: randomUUID(), items: [{ productId: MISSING, quantity: 1n }] },
          alice.auth,
        ),
      ),
    ).toBe("NotFound");
    expect(await codeOf(orders.listOrders({ pageToken: "not a token" }, alice.auth))).toBe("InvalidArgument");

    // Let every process write what it has, then read every line of every process.
    await new Promise((r) => setImmediate(r));
    const logs = [gatewayLog, ...Object.values(mesh.procs).map((p) => p.lines.join("\n"))].join("\n");
    expect(logs.length).toBeGreaterThan(1000);
    expect(logs).toContain("/meshwork.users.v1.UserService/Login"); // the calls were logged
    for (const secret of secrets) expect(logs, "a secret in a log line").not.toContain(secret);
    expect(logs).not.toMatch(/\$argon2id\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]{8,}/);
    expect(logs).not.toMatch(/Failing row contains/);
  });

  it("locks an account after repeated failures, right password or not, with retry-after", async () => {
    const { users } = mesh.clients;
    for (let i = 0; i < 3; i++) {
      expect(await codeOf(users.login({ email: "bob@example.com", password: `guess number ${i}` }))).toBe(
        "Unauthenticated",
      );
    }
    const locked = await users
      .login({ email: "bob@example.com", password: PASSWORD })
      .catch((e: unknown) => ConnectError.from(e));
    expect(locked).toMatchObject({ code: Code.ResourceExhausted });
    expect(Number((locked as ConnectError).metadata.get("retry-after"))).toBeGreaterThanOrEqual(1);
  });

  it("limits Login per client address: a different valid token on every attempt buys no fresh bucket", async () => {
    const { users } = mesh.clients;
    const tokens = [alice, admin].map((a) => a.auth);
    let refused: ConnectError | undefined;
    let attempts = 0;
    for (; attempts < 30 && !refused; attempts++) {
      const res = await users
        .login({ email: "alice@example.com", password: PASSWORD }, tokens[attempts % tokens.length])
        .catch((e: unknown) => ConnectError.from(e));
      if (res instanceof ConnectError && res.code === Code.ResourceExhausted) refused = res;
    }
    // The bucket holds 25 and every Login of this file came from this address.
    expect(refused, "refused within the burst").toBeDefined();
    expect(attempts).toBeLessThanOrEqual(25);
    expect(refused?.rawMessage).toContain("rate limit");
    expect(Number(refused?.metadata.get("retry-after"))).toBeGreaterThanOrEqual(1);
  });
});
