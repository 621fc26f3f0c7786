import { generateKeyPairSync } from "node:crypto";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import {
  file_meshwork_payments_v1_payments,
  PaymentService,
} from "@meshwork/contracts/meshwork/payments/v1/payments";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createService, type Service } from "../service.js";
import { testIdentity, testRuntimeConfig } from "../testing.js";
import { ASSERTION_HEADER, createAssertionSigner } from "./assertion.js";
import { callerOf } from "./interceptor.js";

const USER = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const registration = { email: "a@example.com", password: "long enough pw", displayName: "A" };
const authorization = { paymentId: USER, userId: USER, amount: { amountMinor: 100n, currency: "EUR" } };

/** What a handler saw of its caller: the context's caller and the identity headers. */
type Seen = {
  subject: string | undefined;
  kind: string | undefined;
  header: string | null;
  roles: string | null;
};

/** A users + payments service on a real port whose handlers record who called. */
function startService(identity: ReturnType<typeof testIdentity> | undefined) {
  const seen: Seen[] = [];
  const record = (ctx: Parameters<typeof callerOf>[0] & { requestHeader: Headers }) => {
    const c = callerOf(ctx);
    seen.push({
      subject: c?.subject,
      kind: c?.kind,
      header: ctx.requestHeader.get("x-meshwork-subject"),
      roles: ctx.requestHeader.get("x-meshwork-roles"),
    });
  };
  const service: Service = createService({
    name: "users",
    config: testRuntimeConfig({ identity: identity?.config(undefined, ["users", "payments"]) }),
    files: [file_meshwork_users_v1_users, file_meshwork_payments_v1_payments],
    services: [UserService, PaymentService],
    routes(router) {
      router.service(UserService, {
        async registerUser(_r, ctx) {
          record(ctx);
          return {};
        },
        async getUser(_r, ctx) {
          record(ctx);
          return {};
        },
        async listUsers(_r, ctx) {
          record(ctx);
          return {};
        },
      });
      router.service(PaymentService, {
        async authorizePayment(_r, ctx) {
          record(ctx);
          return {};
        },
      });
    },
  });
  return { service, seen };
}

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => "OK",
    (e: unknown) => Code[ConnectError.from(e).code],
  );

const protocols: Array<[string, (url: string) => Transport]> = [
  // gRPC unary goes through the runtime's fast path, Connect through connect-node's adapter.
  ["gRPC", (baseUrl) => createGrpcTransport({ baseUrl })],
  ["Connect", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" })],
];

describe("identity on a service's own port: only a signed assertion says who calls", () => {
  const identity = testIdentity(["gateway", "orders", "intruder"]);
  let trusting: ReturnType<typeof startService>;
  let open: ReturnType<typeof startService>;
  let trustingUrl: string;
  let openUrl: string;

  beforeAll(async () => {
    // "intruder" signs with a key pair of its own that the service does not trust.
    trusting = startService({
      ...identity,
      config: (self, audiences) => {
        const config = identity.config(self, audiences);
        return { ...config, trust: new Map([...(config.trust ?? [])].filter(([i]) => i !== "intruder")) };
      },
    });
    open = startService(undefined);
    trustingUrl = (await trusting.service.start()).url;
    openUrl = (await open.service.start()).url;
  });
  afterAll(async () => {
    await trusting?.service.shutdown();
    await open?.service.shutdown();
  });

  for (const [name, transport] of protocols) {
    describe(`over ${name}`, () => {
      const users = (url: string) => createClient(UserService, transport(url));
      const payments = (url: string) => createClient(PaymentService, transport(url));
      const as = (token: string) => ({ headers: { [ASSERTION_HEADER]: token } });

      it("refuses a forged identity header sent straight to the port, with or without trust configured", async () => {
        const forged = { headers: { "x-meshwork-subject": USER, "x-meshwork-roles": "admin" } };
        for (const url of [trustingUrl, openUrl]) {
          const before = (url === trustingUrl ? trusting : open).seen.length;
          expect(await codeOf(users(url).getUser({ id: USER }, forged))).toBe("Unauthenticated");
          expect(
            await codeOf(users(url).registerUser(registration, { headers: { "x-meshwork-roles": "admin" } })),
          ).toBe("Unauthenticated");
          expect(await codeOf(users(url).listUsers({}, { headers: { "x-meshwork-email": "a@b.c" } }))).toBe(
            "Unauthenticated",
          );
          // No handler ran.
          expect((url === trustingUrl ? trusting : open).seen.length).toBe(before);
        }
      });

      it("gives the handler the caller of a gateway assertion, in the context and the headers", async () => {
        const token = identity.assert("gateway", { subject: USER, roles: ["customer"] }, "users");
        const before = trusting.seen.length;
        expect(await codeOf(users(trustingUrl).getUser({ id: USER }, as(token)))).toBe("OK");
        expect(trusting.seen[before]).toEqual({
          subject: USER,
          kind: "user",
          header: USER,
          roles: "customer",
        });
      });

      it("enforces the contract's policy: public open, authenticated needs a caller, a role needs the role", async () => {
        const customer = identity.assert("gateway", { subject: USER, roles: ["customer"] }, "users");
        const admin = identity.assert("gateway", { subject: USER, roles: ["admin"] }, "users");
        expect(await codeOf(users(trustingUrl).registerUser(registration))).toBe("OK");
        expect(await codeOf(users(trustingUrl).getUser({ id: USER }))).toBe("Unauthenticated");
        expect(await codeOf(users(trustingUrl).listUsers({}, as(customer)))).toBe("PermissionDenied");
        expect(await codeOf(users(trustingUrl).listUsers({}, as(admin)))).toBe("OK");
        // Without trust configured nothing can be verified: an assertion is refused, not ignored.
        expect(await codeOf(users(openUrl).getUser({ id: USER }, as(customer)))).toBe("Unauthenticated");
      });

      it("refuses an assertion for another audience, from an untrusted issuer, tampered, or not a JWS", async () => {
        const other = identity.assert("gateway", { subject: USER, roles: ["admin"] }, "inventory");
        expect(await codeOf(users(trustingUrl).getUser({ id: USER }, as(other)))).toBe("Unauthenticated");
        const stranger = identity.assert("intruder", { subject: USER, roles: ["admin"] }, "users");
        expect(await codeOf(users(trustingUrl).getUser({ id: USER }, as(stranger)))).toBe("Unauthenticated");
        // A key of its own, calling itself "gateway".
        const { privateKey } = generateKeyPairSync("ed25519");
        const forged = createAssertionSigner({ issuer: "gateway", privateKey }).sign(
          { subject: USER, roles: ["admin"] },
          "users",
        );
        expect(await codeOf(users(trustingUrl).listUsers({}, as(forged)))).toBe("Unauthenticated");
        const good = identity.assert("gateway", { subject: USER, roles: ["customer"] }, "users");
        const [h, , s] = good.split(".");
        const escalated = Buffer.from(
          JSON.stringify({ iss: "gateway", sub: USER, aud: "users", iat: 1, exp: 9e9, roles: ["admin"] }),
        ).toString("base64url");
        expect(await codeOf(users(trustingUrl).listUsers({}, as(`${h}.${escalated}.${s}`)))).toBe(
          "Unauthenticated",
        );
        expect(await codeOf(users(trustingUrl).getUser({ id: USER }, as("not-a-jws")))).toBe(
          "Unauthenticated",
        );
      });

      it("lets a service assert itself (role service), and only itself", async () => {
        const pay = payments(trustingUrl);
        const before = trusting.seen.length;
        const orders = identity.assert("orders", { subject: "orders", roles: ["service"] }, "payments");
        expect(await codeOf(pay.authorizePayment(authorization, as(orders)))).toBe("OK");
        expect(trusting.seen[before]).toMatchObject({ subject: "orders", kind: "service", roles: "service" });
        // No assertion, or the edge's customer: role service missing.
        expect(await codeOf(pay.authorizePayment(authorization))).toBe("Unauthenticated");
        const customer = identity.assert("gateway", { subject: USER, roles: ["customer"] }, "payments");
        expect(await codeOf(pay.authorizePayment(authorization, as(customer)))).toBe("PermissionDenied");
        // A service's key cannot speak for a user or another service, nor give itself roles.
        const asUser = identity.assert("orders", { subject: USER, roles: ["service"] }, "payments");
        expect(await codeOf(pay.authorizePayment(authorization, as(asUser)))).toBe("Unauthenticated");
        const asAdmin = identity.assert("orders", { subject: "orders", roles: ["admin"] }, "users");
        expect(await codeOf(users(trustingUrl).listUsers({}, as(asAdmin)))).toBe("PermissionDenied");
      });
    });
  }
});
