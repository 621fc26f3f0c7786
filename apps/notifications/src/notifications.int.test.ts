import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { NotificationService } from "@meshwork/contracts/meshwork/notifications/v1/notifications";
import { OrderCancelledSchema } from "@meshwork/contracts/meshwork/orders/v1/events";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import {
  cloudEventHeaders,
  connectNats,
  createEnvelope,
  meshStreams,
  provision,
  streamName,
} from "@meshwork/events";
import { testIdentity } from "@meshwork/runtime/testing";
import { type ManagedProcess, startProcess, uniqueName, waitFor } from "@meshwork/testing";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers as natsHeaders } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ADMIN = "00000000-0000-7000-8000-0000000000ad";

/** The gateway's key, as the notifications process of these tests trusts it (`IDENTITY_TRUST`). */
const identity = testIdentity(["gateway"]);

/** Sends the signed identity assertion the gateway sends upstream for an authenticated caller. */
function asCaller(subject: string, roles: string): Interceptor {
  return (next) => (req) => {
    for (const [name, value] of Object.entries(identity.headers("notifications", subject, roles))) {
      req.header.set(name, value);
    }
    return next(req);
  };
}

const usersMain = fileURLToPath(new URL("../../users/dist/main.js", import.meta.url));
const notificationsMain = fileURLToPath(new URL("../dist/main.js", import.meta.url));
const paymentsMain = fileURLToPath(new URL("../../payments/dist/main.js", import.meta.url));

describe("notifications from users' events (real processes, NATS and databases)", () => {
  const namespace = `${uniqueName("t")}.`;
  const dir = mkdtempSync(join(tmpdir(), "mw-notif-"));
  let users: ManagedProcess;
  let notifications: ManagedProcess;
  let payments: ManagedProcess;
  let paymentsClient: ReturnType<typeof createClient<typeof PaymentService>>;
  let usersClient: ReturnType<typeof createClient<typeof UserService>>;
  let client: ReturnType<typeof createClient<typeof NotificationService>>;
  let notificationsUrl = "";

  const spawned: ManagedProcess[] = [];
  const start = async (main: string, name: string) => {
    const p = startProcess(process.execPath, [main], {
      env: {
        PORT: "0",
        DATA_DIR: join(dir, name),
        EVENTS_NAMESPACE: namespace,
        DATABASE_URL: "",
        DISCOVERY: "static",
        // Only notifications checks callers here: the tests call payments' admin methods directly.
        ...(name === "notifications" ? { IDENTITY_TRUST: identity.trustText } : {}),
      },
    });
    spawned.push(p);
    // Each process opens a fresh embedded PGlite: ~2 s on a quiet machine, 53 s seen at load 26.
    const port = (await p.waitForLog((l) => l.msg === "listening", 180_000)).port as number;
    await p.waitForLog((l) => l.msg === "health changed" && l.status === "SERVING", 60_000);
    return { p, url: `http://127.0.0.1:${port}` };
  };

  beforeAll(async () => {
    // First: its consumers wait for the streams their producers declare (never declaring them).
    const n = await start(notificationsMain, "notifications");
    const [u, pay] = await Promise.all([start(usersMain, "users"), start(paymentsMain, "payments")]);
    notifications = n.p;
    users = u.p;
    payments = pay.p;
    paymentsClient = createClient(
      PaymentService,
      createConnectTransport({ baseUrl: pay.url, httpVersion: "2" }),
    );
    // As the gateway would send it for an admin: these tests read several users' notifications.
    client = createClient(
      NotificationService,
      createConnectTransport({ baseUrl: n.url, httpVersion: "2", interceptors: [asCaller(ADMIN, "admin")] }),
    );
    notificationsUrl = n.url;
    usersClient = createClient(UserService, createConnectTransport({ baseUrl: u.url, httpVersion: "2" }));
  }, 420_000); // CI: 'Hook timed out in 120000ms' (load ~20): three PGlite-backed processes to start
  afterAll(async () => {
    await users?.stop();
    await payments?.stop();
    await notifications?.stop();
    for (const p of spawned) await p.stop(); // any that started while another failed to
    const nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "cleanup");
    const jsm = await jetstreamManager(nc);
    for (const s of ["USERS", "PAYMENTS", "ORDERS", "DLQ_NOTIFICATIONS"])
      await jsm.streams.delete(streamName(namespace, s)).catch(() => {});
    await nc.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("records a notification for a registered user, in the trace of the registration", async () => {
    const { user } = await usersClient.registerUser({
      email: "welcome@example.com",
      password: "welcome-aboard",
      displayName: "Wel",
    });
    const id = user?.id ?? "";
    const listed = await waitFor(async () => {
      const res = await client.listNotifications({ userId: id });
      return res.notifications.length > 0 ? res : undefined;
    });
    expect(listed.notifications).toHaveLength(1);
    expect(listed.notifications[0]).toMatchObject({
      userId: id,
      kind: "user.registered",
      title: "Welcome to Meshwork",
    });
    expect(listed.notifications[0]?.body).toContain("welcome@example.com");

    // The same trace on both sides: the users RPC that registered, and the consumer that recorded.
    const rpc = await users.waitForLog(
      (l) => l.msg === "rpc" && l.method === "/meshwork.users.v1.UserService/RegisterUser",
    );
    const recorded = await notifications.waitForLog(
      (l) => l.msg === "notification recorded" && l.user_id === id,
    );
    expect(recorded.trace_id).toBe(rpc.trace_id);
    expect(recorded.event_id).toBe(listed.notifications[0]?.eventId);
  });

  it("reads a user's notifications for that user and admins only: PERMISSION_DENIED for another, UNAUTHENTICATED with no caller", async () => {
    const { user } = await usersClient.registerUser({
      email: "owner@example.com",
      password: "owner-pass-1",
      displayName: "O",
    });
    const owner = user?.id ?? "";
    const as = (subject: string | undefined, roles = "customer") =>
      createClient(
        NotificationService,
        createConnectTransport({
          baseUrl: notificationsUrl,
          httpVersion: "2",
          interceptors: subject ? [asCaller(subject, roles)] : [],
        }),
      );
    await waitFor(
      async () => (await as(owner).listNotifications({ userId: owner })).notifications.length === 1,
    );
    const stranger = "00000000-0000-7000-8000-00000000beef";
    await expect(as(stranger).listNotifications({ userId: owner })).rejects.toMatchObject({
      code: Code.PermissionDenied,
    });
    // The same answer for a user that does not exist: the refusal reveals nothing.
    await expect(
      as(stranger).listNotifications({ userId: "00000000-0000-7000-8000-000000000000" }),
    ).rejects.toMatchObject({ code: Code.PermissionDenied });
    await expect(as(undefined).listNotifications({ userId: owner })).rejects.toMatchObject({
      code: Code.Unauthenticated,
    });
    expect(
      (await as(stranger, "customer,admin").listNotifications({ userId: owner })).notifications,
    ).toHaveLength(1);
  });

  it("pages a user's notifications and validates the request", async () => {
    const { user } = await usersClient.registerUser({
      email: "pager@example.com",
      password: "page-me-1",
      displayName: "P",
    });
    await waitFor(
      async () => (await client.listNotifications({ userId: user?.id ?? "" })).notifications.length === 1,
    );
    const page = await client.listNotifications({ userId: user?.id ?? "", pageSize: 1 });
    expect(page.nextPageToken).toBe("");
    const nobody = await client.listNotifications({ userId: "00000000-0000-7000-8000-000000000000" });
    expect(nobody.notifications).toEqual([]);
    await expect(client.listNotifications({ userId: "nope" })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
    await expect(
      client.listNotifications({ userId: user?.id ?? "", pageToken: "bad" }),
    ).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
  });

  it("tells the user about a refund (PaymentRefunded from the payments service)", async () => {
    const { user } = await usersClient.registerUser({
      email: "refund@example.com",
      password: "money-back-1",
      displayName: "R",
    });
    const userId = user?.id ?? "";
    const paymentId = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    await paymentsClient.authorizePayment({
      paymentId,
      userId,
      amount: { amountMinor: 12_345n, currency: "EUR" },
    });
    await paymentsClient.capturePayment({ paymentId });
    await paymentsClient.refundPayment({ paymentId });
    const refund = await waitFor(async () => {
      const res = await client.listNotifications({ userId });
      return res.notifications.find((n) => n.kind === "payment.refunded");
    });
    expect(refund).toMatchObject({
      title: "Refund issued",
      body: `We refunded €123.45 (payment ${paymentId}).`,
    });
    await payments.waitForLog((l) => l.msg === "rpc" && String(l.method).endsWith("/RefundPayment"));
  });
  it("says what happened to the money when an order is cancelled: refunded, or nothing charged", async () => {
    const userId = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a60";
    const nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "orders-test");
    try {
      // No orders service runs here: notifications, consuming ORDERS since it started, has not
      // declared it (only its owner may). The test declares it as orders would.
      const jsm = await jetstreamManager(nc);
      const orders = meshStreams.orders(namespace);
      expect(
        await jsm.streams.info(orders.name).then(
          () => "exists",
          (e: unknown) => String(e),
        ),
      ).toMatch(/stream not found/);
      await provision(jsm, { streams: [orders] });
      const js = jetstream(nc);
      const cancel = async (orderId: string, reason: string, paymentRefunded: boolean) => {
        const e = createEnvelope(
          OrderCancelledSchema,
          { $typeName: OrderCancelledSchema.typeName, orderId, userId, reason, paymentRefunded },
          { source: "/meshwork/orders", namespace },
        );
        const h = natsHeaders();
        for (const [k, v] of Object.entries(cloudEventHeaders(e))) h.set(k, v);
        await js.publish(e.subject, e.data, { msgID: e.id, headers: h });
      };
      await cancel("order-refunded", "inventory unavailable: no healthy endpoint of inventory", true);
      await cancel("order-voided", "payment declined: over the limit", false);
    } finally {
      await nc.close();
    }
    const bodies = await waitFor(async () => {
      const res = await client.listNotifications({ userId });
      const cancelled = res.notifications.filter((n) => n.kind === "order.cancelled").map((n) => n.body);
      return cancelled.length === 2 ? cancelled.sort() : undefined;
    });
    expect(bodies).toEqual([
      "Your order order-refunded was cancelled (inventory unavailable: no healthy endpoint of inventory); your payment was refunded in full.",
      "Your order order-voided was cancelled (payment declined: over the limit); nothing was charged.",
    ]);
  });
});
