import { randomUUID } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { PaymentRefundedSchema } from "@meshwork/contracts/meshwork/payments/v1/events";
import { PaymentService, PaymentState } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { type DatabaseHandle, openDatabase } from "@meshwork/db";
import { connectNats, streamName } from "@meshwork/events";
import { waitFor } from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsUrl, openTestPayments } from "../test/harness.js";
import { type PaymentsSchema, payments, schema } from "./adapters/db/schema.js";
import { SimulatedProvider } from "./adapters/provider/simulated-provider.js";
import type { Config } from "./config.js";

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );

/** The hold sweeper's period in these tests. */
const SWEEP_MS = 100;

describe("payments service on the real Postgres and NATS", () => {
  const t = openTestPayments();
  const namespace = t.namespace;
  let reader: DatabaseHandle<PaymentsSchema>;
  let dbConfig: Config["db"] | undefined;
  let nc: NatsConnection;
  let provider: SimulatedProvider;
  let client: ReturnType<typeof createClient<typeof PaymentService>>;
  let grpcClient: ReturnType<typeof createClient<typeof PaymentService>>;
  const user = randomUUID();
  const eur = (amountMinor: bigint) => ({ amountMinor, currency: "EUR" });
  /** Whether the payment is a tombstone whose void the provider has not confirmed. */
  const unreleasedTombstone = async (id: string) => {
    const rows = await reader.db
      .select({ amountMinor: payments.amountMinor, providerVoidAt: payments.providerVoidAt })
      .from(payments)
      .where(eq(payments.id, id));
    if (rows.length !== 1 || rows[0]?.amountMinor !== null) throw new Error(`no tombstone for ${id}`);
    return rows[0].providerVoidAt === null;
  };
  const healthy = { failureRate: 0, addedLatencyMs: 0, hardDown: false, declineAboveMinor: 100_000n };

  beforeAll(async () => {
    const db = await t.database("mw_pay");
    const started = await t.start(
      {
        DATABASE_URL: db.url,
        PAYMENTS_DECLINE_ABOVE_MINOR: "100000",
        PAYMENTS_HOLD_SWEEP_MS: String(SWEEP_MS),
      },
      (config) => {
        dbConfig = config.db;
        provider = new SimulatedProvider(config.faults);
        return provider;
      },
    );
    reader = await openDatabase(dbConfig as Config["db"], schema);
    client = createClient(PaymentService, createConnectTransport({ baseUrl: started.url, httpVersion: "2" }));
    grpcClient = started.client;
    nc = await connectNats(natsUrl, "payments-test");
  });
  afterAll(async () => {
    await reader?.close();
    await nc?.close();
    await t.close();
  });

  it("authorizes and captures, idempotently by payment id", async () => {
    const id = randomUUID();
    const first = await client.authorizePayment({ paymentId: id, userId: user, amount: eur(2_500n) });
    expect(first.payment).toMatchObject({
      id,
      userId: user,
      state: PaymentState.AUTHORIZED,
      amount: eur(2_500n),
    });
    const again = await grpcClient.authorizePayment({ paymentId: id, userId: user, amount: eur(2_500n) });
    expect(again.payment).toEqual(first.payment);
    const other = await failure(
      client.authorizePayment({ paymentId: id, userId: user, amount: eur(2_501n) }),
    );
    expect(other.code).toBe(Code.AlreadyExists);

    const captured = await Promise.all([
      client.capturePayment({ paymentId: id }),
      client.capturePayment({ paymentId: id }),
    ]);
    expect(captured.map((c) => c.payment?.state)).toEqual([PaymentState.CAPTURED, PaymentState.CAPTURED]);
    const voided = await failure(client.voidPayment({ paymentId: id }));
    expect(voided.code).toBe(Code.FailedPrecondition);
    expect(voided.rawMessage).toBe(`payment ${id} is captured: cannot void it`);
    expect((await client.getPayment({ paymentId: id })).payment?.state).toBe(PaymentState.CAPTURED);
    expect((await failure(client.capturePayment({ paymentId: randomUUID() }))).code).toBe(Code.NotFound);
  });

  it("declines an amount over the limit with FAILED_PRECONDITION, the same on a retry", async () => {
    const id = randomUUID();
    const declined = await failure(
      client.authorizePayment({ paymentId: id, userId: user, amount: eur(100_001n) }),
    );
    expect(declined.code).toBe(Code.FailedPrecondition);
    expect(declined.rawMessage).toBe(`payment ${id} declined: amount 100001 is over the limit of 100000`);
    const again = await failure(
      client.authorizePayment({ paymentId: id, userId: user, amount: eur(100_001n) }),
    );
    expect(again.rawMessage).toBe(declined.rawMessage);
    expect((await client.getPayment({ paymentId: id })).payment).toMatchObject({
      state: PaymentState.DECLINED,
      declineReason: "amount 100001 is over the limit of 100000",
    });
    // Voiding a declined payment is a no-op; capturing it is refused.
    expect((await client.voidPayment({ paymentId: id })).payment?.state).toBe(PaymentState.DECLINED);
    expect((await failure(client.capturePayment({ paymentId: id }))).code).toBe(Code.FailedPrecondition);
  });

  it("voids an authorization, and a void that came first refuses the late authorization", async () => {
    const id = randomUUID();
    await client.authorizePayment({ paymentId: id, userId: user, amount: eur(100n) });
    expect((await client.voidPayment({ paymentId: id })).payment?.state).toBe(PaymentState.VOIDED);
    expect((await client.voidPayment({ paymentId: id })).payment?.state).toBe(PaymentState.VOIDED);
    expect((await failure(client.capturePayment({ paymentId: id }))).code).toBe(Code.FailedPrecondition);

    const late = randomUUID();
    expect((await client.voidPayment({ paymentId: late })).payment?.state).toBe(PaymentState.VOIDED);
    const refused = await failure(
      client.authorizePayment({ paymentId: late, userId: user, amount: eur(100n) }),
    );
    expect(refused.code).toBe(Code.FailedPrecondition);
    expect(refused.rawMessage).toBe(`payment ${late} is voided: cannot authorize it`);

    // A void that wins the race against an authorization already at the provider: the hold the
    // provider placed meanwhile is released, not left holding the customer's funds.
    const raced = randomUUID();
    const holdsBefore = provider.holds;
    const faults = provider.faults;
    provider.faults = { ...faults, addedLatencyMs: 300 };
    try {
      const authorizing = failure(
        client.authorizePayment({ paymentId: raced, userId: user, amount: eur(100n) }),
      );
      await waitFor(() => provider.asked("authorize", raced), { what: "the authorization at the provider" });
      expect((await client.voidPayment({ paymentId: raced })).payment?.state).toBe(PaymentState.VOIDED);
      expect((await authorizing).code).toBe(Code.FailedPrecondition);
      expect(provider.asked("void", raced)).toBe(true);
      await waitFor(() => provider.holds === holdsBefore, { what: "the raced hold released" });
    } finally {
      provider.faults = faults;
    }
  });

  it("a void of a payment unknown here releases a hold the provider placed for it (its authorizer died before recording it)", async () => {
    const id = randomUUID();
    const holdsBefore = provider.holds;
    // What a payments instance killed after the provider's answer, before its insert, leaves.
    await provider.call("authorize", id, 100);
    expect(provider.holds).toBe(holdsBefore + 1);
    expect((await failure(client.getPayment({ paymentId: id }))).code).toBe(Code.NotFound);
    expect((await client.voidPayment({ paymentId: id })).payment?.state).toBe(PaymentState.VOIDED);
    expect(provider.asked("void", id)).toBe(true);
    expect(provider.holds).toBe(holdsBefore);
    expect(await unreleasedTombstone(id)).toBe(false);
    const late = await failure(client.authorizePayment({ paymentId: id, userId: user, amount: eur(100n) }));
    expect(late.code).toBe(Code.FailedPrecondition);
  });

  it("a hold the provider kept because it was down at the void is released by the sweeper once it is back, with no second void", async () => {
    const id = randomUUID();
    const holdsBefore = provider.holds;
    await provider.call("authorize", id, 100);
    await client.setFaults({ faults: { ...healthy, hardDown: true } });
    try {
      // The provider down: the void still answers (a cancellation does not wait for the
      // provider) and its tombstone refuses a late authorization; the hold stays while it is down,
      // through several sweeps.
      expect((await client.voidPayment({ paymentId: id })).payment?.state).toBe(PaymentState.VOIDED);
      const refused = await failure(
        client.authorizePayment({ paymentId: id, userId: user, amount: eur(100n) }),
      );
      expect(refused.code).toBe(Code.FailedPrecondition);
      expect(await unreleasedTombstone(id)).toBe(true);
      const sweptAt = Date.now();
      await waitFor(async () => (Date.now() - sweptAt > 4 * SWEEP_MS ? true : undefined));
      expect(provider.holds).toBe(holdsBefore + 1);
      expect(await unreleasedTombstone(id)).toBe(true);
    } finally {
      await client.setFaults({ faults: healthy });
    }
    // Nobody voids again: the sweeper finds the tombstone and voids it at the provider.
    await waitFor(async () => ((await unreleasedTombstone(id)) ? undefined : true), { timeoutMs: 20_000 });
    expect(provider.asked("void", id)).toBe(true);
    expect(provider.holds).toBe(holdsBefore);
    expect((await provider.ledger(id)).map((e) => e.operation).sort()).toEqual(["authorize", "void"]);
  });

  it("refunds a captured payment once and publishes PaymentRefunded through the outbox", async () => {
    const id = randomUUID();
    await client.authorizePayment({ paymentId: id, userId: user, amount: eur(777n) });
    expect((await failure(client.refundPayment({ paymentId: id }))).code).toBe(Code.FailedPrecondition);
    await client.capturePayment({ paymentId: id });
    expect((await client.refundPayment({ paymentId: id })).payment?.state).toBe(PaymentState.REFUNDED);
    expect((await client.refundPayment({ paymentId: id })).payment?.state).toBe(PaymentState.REFUNDED);

    const jsm = await jetstreamManager(nc);
    const stream = streamName(namespace, "PAYMENTS");
    const msg = await waitFor(() =>
      jsm.streams
        .getMessage(stream, { last_by_subj: `${namespace}meshwork.payments.v1.PaymentRefunded` })
        .then((m) => m ?? undefined)
        .catch(() => undefined),
    );
    const event = fromBinary(PaymentRefundedSchema, msg.data);
    expect(event).toMatchObject({ paymentId: id, userId: user, amount: eur(777n) });
    expect(msg.header?.get("ce-type")).toBe("meshwork.payments.v1.PaymentRefunded");
    // Exactly one event for the two refund calls.
    expect((await jsm.streams.info(stream)).state.messages).toBe(1);
  });

  it("fails with UNAVAILABLE and records nothing while the provider is down or failing; SetFaults switches it", async () => {
    await client.setFaults({ faults: { ...healthy, hardDown: true } });
    expect((await client.getFaults({})).faults?.hardDown).toBe(true);
    const id = randomUUID();
    const down = await failure(client.authorizePayment({ paymentId: id, userId: user, amount: eur(100n) }));
    expect(down.code).toBe(Code.Unavailable);
    expect(down.rawMessage).toBe("payment provider unavailable during authorize: the provider is down");
    expect((await failure(client.getPayment({ paymentId: id }))).code).toBe(Code.NotFound);

    await client.setFaults({ faults: { ...healthy, failureRate: 1 } });
    expect(
      (await failure(client.authorizePayment({ paymentId: id, userId: user, amount: eur(100n) }))).code,
    ).toBe(Code.Unavailable);
    await client.setFaults({ faults: { ...healthy, addedLatencyMs: 150 } });
    const t0 = performance.now();
    await client.authorizePayment({ paymentId: id, userId: user, amount: eur(100n) });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
    // A capture that fails at the provider leaves the authorization as it was.
    await client.setFaults({ faults: { ...healthy, hardDown: true } });
    expect((await failure(client.capturePayment({ paymentId: id }))).code).toBe(Code.Unavailable);
    expect((await client.getPayment({ paymentId: id })).payment?.state).toBe(PaymentState.AUTHORIZED);
    await client.setFaults({ faults: healthy });
    expect((await client.capturePayment({ paymentId: id })).payment?.state).toBe(PaymentState.CAPTURED);

    const bad = await failure(client.setFaults({ faults: { ...healthy, failureRate: 1.5 } }));
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.rawMessage).toContain("faults.failure_rate");
    const badId = await failure(
      client.authorizePayment({ paymentId: "nope", userId: user, amount: eur(1n) }),
    );
    expect(badId.code).toBe(Code.InvalidArgument);
    expect(badId.rawMessage).toContain("payment_id");
  });
});
