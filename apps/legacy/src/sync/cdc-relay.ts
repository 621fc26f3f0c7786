import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  OrderChangedSchema,
  ProductChangedSchema,
  SealedValueSchema,
  UserChangedSchema,
} from "@meshwork/contracts/meshwork/legacy/v1/events";
import { type DatabaseHandle, queryRows } from "@meshwork/db";
import {
  createEnvelope,
  type EventEnvelope,
  type EventsConfig,
  enqueueEvents,
  inboxTable,
  meshStreams,
  type OutboxPublisher,
  outboxTable,
  type SealingKey,
  sealedFieldAad,
  sealValue,
  startOutboxPublisher,
} from "@meshwork/events";
import type { Logger } from "@meshwork/telemetry";
import { metrics, trace } from "@opentelemetry/api";
import { sql } from "drizzle-orm";

/** The mesh-shaped outbox the translator fills and the mesh's relay publishes (schema step 3). */
export const cdcEvents = outboxTable("cdc_events");
/** The reverse sync's inbox (exactly-once effect of the new services' events). */
export const meshInbox = inboxTable("mesh_inbox");
export const cdcSchema = { cdcEvents, meshInbox };
export type CdcDatabase = DatabaseHandle<typeof cdcSchema>;

const SOURCE = "meshwork/legacy";

/** A product's state as the trigger's `cdc_product_state` writes it (jsonb). */
interface CapturedState {
  id: string;
  sku: string;
  name: string;
  price_minor: number | string;
  currency: string;
  on_hand: number | string;
  create_time: string;
  update_time: string | null;
  /** Schema step 7 on: what the capture saw of the mesh, and legacy's own running stock change. */
  seen_name_version?: number | string;
  seen_stock_version?: number | string;
  legacy_delta?: number | string;
}

/** A number the capture may not carry (one taken before schema step 7). */
const optionalBigint = (v: number | string | undefined): bigint | undefined =>
  v === undefined || v === null ? undefined : BigInt(v);

/** A user's account as the trigger's `cdc_user_state` writes it (jsonb, schema step 5). */
interface CapturedUser {
  id: string;
  email: string;
  display_name: string;
  password_hash: string;
  create_time: string;
}

/** An order with its lines as the trigger's `cdc_order_state` writes it (jsonb, schema step 6). */
interface CapturedOrder {
  id: string;
  user_id: string;
  idempotency_key: string;
  status: string;
  total_minor: number | string;
  currency: string;
  create_time: string;
  update_time: string;
  items: { product_id: string; quantity: number | string; unit_price_minor: number | string }[];
}

type CapturedRow = {
  seq: string | number;
  event_id: string;
  event_type: string;
  payload: CapturedState;
  created_at: Date | string;
};

/** `value` sealed under `key` for one field of user `userId` (AAD: the user id and the field). */
const sealUserField = (key: SealingKey, value: string, userId: string, field: string) =>
  create(SealedValueSchema, sealValue(key, value, sealedFieldAad(userId, field)));

/**
 * A captured user row as the UserChanged the users service reads, on the LEGACY_USERS stream
 * (`meshwork.legacy_users.v1.UserChanged`, not its type's `meshwork.legacy.v1.UserChanged`,
 * which is LEGACY's, readable by every consumer of the products). Everything about the person
 * travels sealed under `syncKey` (AES-256-GCM), so that a copy of the stream is useless without
 * the key only legacy and users hold: the password hash, the email and the display name each
 * bound to the user id and to its field. The hash goes in `sealed_password_hash_v2`, not in the
 * `sealed_password_hash` an older users service reads, so that one refuses the event (no hash)
 * rather than apply it with a blank email and name. The clear `password_hash`, `email` and
 * `display_name` fields and `sealed_password_hash` are no longer written. The consumer
 * dispatches on `ce-type`, which stays the type's name.
 */
export function toUserChanged(row: CapturedRow, namespace: string, syncKey: SealingKey): EventEnvelope {
  const u = row.payload as unknown as CapturedUser;
  const envelope = createEnvelope(
    UserChangedSchema,
    create(UserChangedSchema, {
      userId: u.id,
      sequence: BigInt(row.seq),
      sealedPasswordHashV2: sealUserField(syncKey, u.password_hash, u.id, "sealed_password_hash_v2"),
      sealedEmail: sealUserField(syncKey, u.email, u.id, "sealed_email"),
      sealedDisplayName: sealUserField(syncKey, u.display_name, u.id, "sealed_display_name"),
      createTime: timestampFromDate(new Date(u.create_time)),
      snapshot: row.event_type === "legacy.user.snapshot",
    }),
    { source: SOURCE, namespace, id: row.event_id, time: new Date(row.created_at) },
  );
  return { ...envelope, subject: `${namespace}meshwork.legacy_users.v1.UserChanged` };
}

/** A captured order row as the OrderChanged the orders service reads. */
export function toOrderChanged(row: CapturedRow, namespace: string): EventEnvelope {
  const o = row.payload as unknown as CapturedOrder;
  return createEnvelope(
    OrderChangedSchema,
    create(OrderChangedSchema, {
      orderId: o.id,
      sequence: BigInt(row.seq),
      userId: o.user_id,
      idempotencyKey: o.idempotency_key,
      status: o.status,
      total: { amountMinor: BigInt(o.total_minor), currency: o.currency.trim() },
      items: o.items.map((i) => ({
        productId: i.product_id,
        quantity: BigInt(i.quantity),
        unitPriceMinor: BigInt(i.unit_price_minor),
      })),
      createTime: timestampFromDate(new Date(o.create_time)),
      updateTime: timestampFromDate(new Date(o.update_time)),
      snapshot: row.event_type === "legacy.order.snapshot",
    }),
    { source: SOURCE, namespace, id: row.event_id, time: new Date(row.created_at) },
  );
}

/** A captured row (a product's, a user's or an order's, by its event type) as the event the mesh reads. */
export function toMeshEvent(row: CapturedRow, namespace: string, syncKey: SealingKey): EventEnvelope {
  if (row.event_type.startsWith("legacy.user.")) return toUserChanged(row, namespace, syncKey);
  if (row.event_type.startsWith("legacy.order.")) return toOrderChanged(row, namespace);
  return toProductChanged(row, namespace);
}

/** A captured row as the Protobuf event the mesh reads. */
export function toProductChanged(row: CapturedRow, namespace: string): EventEnvelope {
  const p = row.payload;
  return createEnvelope(
    ProductChangedSchema,
    create(ProductChangedSchema, {
      productId: p.id,
      sequence: BigInt(row.seq),
      sku: p.sku,
      name: p.name,
      price: { amountMinor: BigInt(p.price_minor), currency: p.currency.trim() },
      onHand: BigInt(p.on_hand),
      createTime: timestampFromDate(new Date(p.create_time)),
      updateTime: timestampFromDate(new Date(p.update_time ?? p.create_time)),
      snapshot: row.event_type === "legacy.product.snapshot",
      seenNameVersion: optionalBigint(p.seen_name_version),
      seenStockVersion: optionalBigint(p.seen_stock_version),
      legacyStockDelta: optionalBigint(p.legacy_delta),
    }),
    { source: SOURCE, namespace, id: row.event_id, time: new Date(row.created_at) },
  );
}

interface TranslatorOptions {
  database: CdcDatabase;
  namespace: string;
  /** Seals the users' password hashes, emails and names (LEGACY_SYNC_KEY's first key). */
  syncKey: SealingKey;
  logger: Logger;
  batchSize: number;
  pollMs: number;
  retentionMs: number;
}

/** One batch: claimed with SKIP LOCKED, written to the mesh outbox, marked handed over. */
async function translateBatch(options: TranslatorOptions): Promise<number> {
  return options.database.db.transaction(async (tx) => {
    const rows = await queryRows<CapturedRow>(
      tx,
      sql`select seq, event_id, event_type, payload, created_at from cdc_outbox
          where sent_at is null order by seq limit ${options.batchSize} for update skip locked`,
    );
    if (rows.length === 0) return 0;
    await enqueueEvents(
      tx,
      cdcEvents,
      rows.map((r) => toMeshEvent(r, options.namespace, options.syncKey)),
    );
    await tx.execute(
      sql`update cdc_outbox set sent_at = now()
          where seq = any(${sql.param(rows.map((r) => String(r.seq)))}::bigint[])`,
    );
    return rows.length;
  });
}

async function pruneHandedOver(options: TranslatorOptions): Promise<void> {
  const age = `${Math.round(options.retentionMs / 1000)} seconds`;
  await options.database.db.execute(sql`delete from cdc_outbox where sent_at < now() - ${age}::interval`);
}

/**
 * Moves what the triggers captured (`cdc_outbox`, JSON written by plpgsql) into `cdc_events` as
 * Protobuf ProductChanged rows, one batch per transaction: claimed with SKIP LOCKED, written to
 * the mesh outbox (whose NOTIFY wakes the relay), marked handed over. The trigger cannot encode
 * Protobuf; everything after this step is the mesh's own outbox relay, unchanged.
 */
export class CdcTranslator {
  private running = false;
  private loop: Promise<void> | undefined;
  private unlisten: (() => Promise<void>) | undefined;
  private wake: (() => void) | undefined;
  private pending = false;
  private lastPrune = 0;

  constructor(private readonly options: TranslatorOptions) {}

  translateOnce(): Promise<number> {
    return translateBatch(this.options);
  }

  async start(): Promise<void> {
    this.running = true;
    this.unlisten = await this.options.database.listen("cdc_outbox", () => {
      this.pending = true;
      this.wake?.();
    });
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    await this.unlisten?.();
  }

  private async run(): Promise<void> {
    let failed = 0;
    while (this.running) {
      this.pending = false;
      try {
        const n = await this.translateOnce();
        failed = 0;
        if (Date.now() - this.lastPrune > 60_000) {
          this.lastPrune = Date.now();
          await pruneHandedOver(this.options);
        }
        if (n >= this.options.batchSize) continue;
      } catch (err) {
        failed++;
        if (failed === 1 || failed % 20 === 0)
          this.options.logger.warn(
            { err: String(err), failures: failed },
            "cdc translator failed; will retry",
          );
      }
      await this.idle(failed > 0 ? Math.min(5_000, 100 * 2 ** failed) : this.options.pollMs);
    }
  }

  /** Waits for a NOTIFY, stop() or `ms`, whichever comes first. */
  private idle(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.pending || !this.running) return resolve();
      const done = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }
}

/** Creates the translator (not started). */
export function createCdcTranslator(options: TranslatorOptions): CdcTranslator {
  return new CdcTranslator(options);
}

/** The CDC relay of the monolith, started: translator plus the mesh's outbox relay. */
export interface CdcRelay {
  readonly publisher: OutboxPublisher;
  stop(): Promise<void>;
}

/**
 * Starts relaying the legacy database's change data capture onto the LEGACY stream (users onto
 * LEGACY_USERS, both declared here: legacy owns them): the
 * translator (cdc_outbox -> cdc_events) and libs/events' outbox publisher (cdc_events ->
 * JetStream, `Nats-Msg-Id` = the captured row's event id, so a repeat is dropped by the broker).
 */
export async function startCdcRelay(options: {
  database: CdcDatabase;
  events: EventsConfig;
  syncKey: SealingKey;
  logger: Logger;
}): Promise<CdcRelay> {
  const { database, events, logger } = options;
  const translator = createCdcTranslator({
    database,
    syncKey: options.syncKey,
    namespace: events.namespace,
    logger,
    ...events.outbox,
  });
  const publisher = await startOutboxPublisher({
    service: "legacy",
    config: events,
    stream: meshStreams.legacy(events.namespace, { replicas: events.streamReplicas }),
    alsoStreams: [meshStreams.legacyUsers(events.namespace, { replicas: events.streamReplicas })],
    database,
    table: cdcEvents,
    logger,
    tracer: trace.getTracer("meshwork-legacy"),
    meter: metrics.getMeter("meshwork-legacy"),
  });
  await translator.start();
  return {
    publisher,
    async stop() {
      await translator.stop();
      await publisher.stop();
    },
  };
}
