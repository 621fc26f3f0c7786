import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { PaymentRefundedSchema } from "@meshwork/contracts/meshwork/payments/v1/events";
import { type AnyTransaction, type Database, prepareStatement, type Queryable } from "@meshwork/db";
import { createEnvelope, enqueueEvents } from "@meshwork/events";
import { and, eq, sql } from "drizzle-orm";
import {
  type AuthorizeInput,
  type Payment,
  PaymentConflictError,
  PaymentDeclinedError,
  PaymentNotFoundError,
  type PaymentState,
  PaymentStateError,
} from "../../domain/payment.js";
import type { ProviderOperation, SimulatedProvider } from "../provider/simulated-provider.js";
import { outbox, type PaymentsSchema, payments } from "./schema.js";

export const EVENT_SOURCE = "/meshwork/payments";

async function load(db: Queryable, id: string, lock: boolean): Promise<Payment | undefined> {
  const q = db.select().from(payments).where(eq(payments.id, id));
  const [row] = await (lock ? q.for("update") : q);
  return row;
}

/**
 * The statements of the order path (AuthorizePayment's read and insert, outside a transaction;
 * CapturePayment's move, in one), each built by Drizzle once and run through postgres.js
 * directly (`prepareStatement`): Drizzle otherwise builds the SQL text per call, and its prepared
 * queries still map every call through its session. Drizzle was 15.9% of the payments process's
 * busy time in the orders bench (MESHWORK_BENCH_PROFILE, steady state), most of it these.
 */
const loadStatement = prepareStatement<Payment>("payments_load", (q) =>
  q
    .select()
    .from(payments)
    .where(eq(payments.id, sql.placeholder("id"))),
);

const insertStatement = prepareStatement<Payment>("payments_insert", (q) =>
  q
    .insert(payments)
    .values({
      id: sql.placeholder("id"),
      userId: sql.placeholder("userId"),
      amountMinor: sql.placeholder("amountMinor"),
      currency: sql.placeholder("currency"),
      state: sql.placeholder("state"),
      declineReason: sql.placeholder("declineReason"),
    })
    .onConflictDoNothing()
    .returning(),
);

/** `from` -> `to` where the payment is still `from`; the moved row, none when it was not. */
const moveStatement = prepareStatement<Payment>("payments_move", (q) =>
  q
    .update(payments)
    // Drizzle's types do not take placeholders in a set; its builder does (as the saga's record).
    .set({
      state: sql.placeholder("to"),
      updatedAt: sql.placeholder("updatedAt"),
    } as unknown as Partial<Payment>)
    .where(and(eq(payments.id, sql.placeholder("id")), eq(payments.state, sql.placeholder("from"))))
    .returning(),
);

/** `load(db, id, false)`, through the prepared statement. */
async function loadUnlocked(db: Database<PaymentsSchema>, id: string): Promise<Payment | undefined> {
  const [row] = await loadStatement.execute(db, { id });
  return row;
}

/** Inserts a new payment unless its id exists; the row, or undefined when it existed. */
async function insertNew(
  db: Database<PaymentsSchema>,
  row: Pick<Payment, "id" | "userId" | "amountMinor" | "currency" | "state" | "declineReason">,
): Promise<Payment | undefined> {
  const [inserted] = await insertStatement.execute(db, row);
  return inserted;
}

/** What a repeated AuthorizePayment gets for an existing payment. */
function replay(existing: Payment, input: AuthorizeInput): Payment {
  if (existing.userId === null) throw new PaymentStateError(input.paymentId, existing.state, "authorize");
  if (
    existing.userId !== input.userId ||
    existing.amountMinor !== input.amountMinor ||
    existing.currency !== input.currency
  ) {
    throw new PaymentConflictError(input.paymentId);
  }
  if (existing.state === "declined")
    throw new PaymentDeclinedError(existing.id, existing.declineReason ?? "");
  return existing;
}

/**
 * Payments in Postgres, moved through the provider. A provider failure changes nothing (the
 * call can be retried); every transition locks the payment's row, so concurrent calls about one
 * payment apply once. A refund writes PaymentRefunded to the outbox in its transaction.
 */
export function createPaymentStore(
  db: Database<PaymentsSchema>,
  provider: SimulatedProvider,
  namespace: string,
  /** A hold not released yet (the provider failed the void; the sweeper retries): for the log. */
  onHoldLeft?: (paymentId: string, err: unknown) => void,
) {
  return {
    authorize: (input: AuthorizeInput) => authorize(db, provider, input, onHoldLeft),

    capture: (id: string) => transition(db, provider, id, "capture", "authorized", "captured"),

    /**
     * Voids an authorization; for an id unknown here, records a voided tombstone (a late
     * authorization is refused) and voids the id at the provider too.
     */
    async void(id: string): Promise<Payment> {
      const [tombstone] = await db
        .insert(payments)
        .values({ id, state: "voided" })
        .onConflictDoNothing()
        .returning();
      const p = tombstone ?? (await load(db, id, false));
      if (p?.state === "voided" && p.amountMinor === null) {
        // A tombstone: the provider may still hold an authorization this table never recorded,
        // the instance that asked for it killed between the provider's answer and its insert
        // (seen in the 10,000-order chaos run: "payments says voided, but the provider's ledger
        // says authorized"). Every void of a tombstone releases it there (idempotent at the
        // provider). A provider failure does not fail the void (a cancellation must not wait
        // for the provider): the tombstone stays unreleased and the hold sweeper retries it.
        await releaseAtProvider(db, provider, id).catch((err: unknown) => onHoldLeft?.(id, err));
        return p;
      }
      if (p?.state === "declined" || p?.state === "refunded") return p; // nothing is held
      return transition(db, provider, id, "void", "authorized", "voided");
    },

    /**
     * The hold sweeper's pass: voids at the provider the ids of tombstones older than `minAgeMs`
     * that it has not confirmed yet, oldest first, at most `limit`.
     */
    releaseLeftHolds: (minAgeMs: number, limit = 100) => releaseLeftHolds(db, provider, minAgeMs, limit),

    refund: (id: string) =>
      transition(db, provider, id, "refund", "captured", "refunded", async (tx, p) => {
        const event = create(PaymentRefundedSchema, {
          paymentId: p.id,
          userId: p.userId ?? "",
          amount: { amountMinor: BigInt(p.amountMinor ?? 0), currency: p.currency ?? "" },
          refundTime: timestampFromDate(p.updatedAt),
        });
        await enqueueEvents(tx, outbox, [
          createEnvelope(PaymentRefundedSchema, event, { source: EVENT_SOURCE, namespace }),
        ]);
      }),

    async get(id: string): Promise<Payment> {
      const p = await load(db, id, false);
      if (!p) throw new PaymentNotFoundError(id);
      return p;
    },
  };
}

/**
 * Voids at the provider the ids of tombstones older than `minAgeMs` that it has not confirmed yet
 * (their void failed at the provider, or its instance died before asking), oldest first, at most
 * `limit`; stops at the provider's first failure (it is most likely down: the next pass starts
 * over). Idempotent at the provider, so instances sweeping at once do no harm.
 */
async function releaseLeftHolds(
  db: Database<PaymentsSchema>,
  provider: SimulatedProvider,
  minAgeMs: number,
  limit: number,
): Promise<{ released: number; pending: number; error?: unknown }> {
  const rows = await db
    .select({ id: payments.id })
    .from(payments)
    .where(
      sql`${payments.amountMinor} IS NULL AND ${payments.providerVoidAt} IS NULL
          AND ${payments.createdAt} < now() - make_interval(secs => ${minAgeMs / 1000})`,
    )
    .orderBy(payments.createdAt)
    .limit(limit);
  let released = 0;
  for (const { id } of rows) {
    try {
      await releaseAtProvider(db, provider, id);
      released++;
    } catch (error) {
      return { released, pending: rows.length - released, error };
    }
  }
  return { released, pending: 0 };
}

/** Voids a tombstone's id at the provider and records that the provider confirmed it. */
async function releaseAtProvider(
  db: Database<PaymentsSchema>,
  provider: SimulatedProvider,
  id: string,
): Promise<void> {
  await provider.call("void", id);
  await db
    .update(payments)
    .set({ providerVoidAt: new Date() })
    .where(sql`${payments.id} = ${id} AND ${payments.providerVoidAt} IS NULL`);
}

/**
 * Authorizes a new payment at the provider and records it (authorized or declined); a repeated
 * call answers as the first one decided.
 */
async function authorize(
  db: Database<PaymentsSchema>,
  provider: SimulatedProvider,
  input: AuthorizeInput,
  onHoldLeft: ((paymentId: string, err: unknown) => void) | undefined,
): Promise<Payment> {
  const existing = await loadUnlocked(db, input.paymentId);
  if (existing) return replay(existing, input);
  const outcome = await provider.call("authorize", input.paymentId, input.amountMinor);
  const row = await insertNew(db, {
    id: input.paymentId,
    userId: input.userId,
    amountMinor: input.amountMinor,
    currency: input.currency,
    state: outcome.declined ? "declined" : "authorized",
    declineReason: outcome.declined ?? null,
  });
  if (!row) {
    // A concurrent call with the same id (or a void) got there first: answer as it decided.
    const first = (await load(db, input.paymentId, false)) as Payment;
    if (first.state === "voided" && !outcome.declined) {
      // A void won the race while this authorization was at the provider: the hold it placed
      // is released (idempotent at the provider, by payment id); if the provider fails, the
      // tombstone is marked unreleased again and the hold sweeper retries.
      await provider.call("void", input.paymentId).catch(async (err: unknown) => {
        onHoldLeft?.(input.paymentId, err);
        // Best effort: the answer below stands whatever this update meets.
        await db
          .update(payments)
          .set({ providerVoidAt: null })
          .where(eq(payments.id, input.paymentId))
          .catch((e: unknown) => onHoldLeft?.(input.paymentId, e));
      });
    }
    return replay(first, input);
  }
  if (row.state === "declined") throw new PaymentDeclinedError(row.id, row.declineReason ?? "");
  return row;
}

/**
 * Locks the payment, and moves it `from` -> `to` through the provider; `to` itself is a no-op.
 * The conditional UPDATE both locks the row and moves it (a locking read and an update took two
 * statements): round trips per capture 4 -> 3 with BEGIN and COMMIT. The provider is called
 * with the row locked and moved; its failure rolls the move back.
 */
function transition(
  db: Database<PaymentsSchema>,
  provider: SimulatedProvider,
  id: string,
  op: ProviderOperation,
  from: PaymentState,
  to: PaymentState,
  after?: (tx: AnyTransaction, p: Payment) => Promise<void>,
): Promise<Payment> {
  return db.transaction(async (tx) => {
    const move = async () => (await moveStatement.execute(tx, { id, from, to, updatedAt: new Date() }))[0];
    let row = await move();
    if (!row) {
      const p = await load(tx, id, true);
      if (!p) throw new PaymentNotFoundError(id);
      if (p.state === to) return p;
      if (p.state !== from) throw new PaymentStateError(id, p.state, op);
      // `from` now, not when the update ran: it read the row as of its start and did not wait
      // (a capture still at the provider when a refund came; an authorization committed since).
      // The reload waited and holds the lock: the update again moves it.
      row = await move();
      if (!row) throw new Error(`payment ${id} moved while locked`);
    }
    await provider.call(op, id, row.amountMinor ?? 0);
    await after?.(tx, row);
    return row;
  });
}

export type PaymentStore = ReturnType<typeof createPaymentStore>;
